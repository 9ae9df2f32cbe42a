"""Evidence: the analysed frame with boxes and the zone drawn, photos, clips; stored by content hash, kept as long as needed."""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from vision.detections import Detections

NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|mp4)$")
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}


def annotate(image: np.ndarray, detections: Detections, tracks: Detections, polygon_px: np.ndarray | None,
             in_zone: np.ndarray | None, title: str) -> np.ndarray:
    """A copy of ``image`` with the zone, every person (red inside the zone), track ids, and a title bar."""
    out = image.copy()
    if polygon_px is not None:
        overlay = out.copy()
        cv2.fillPoly(overlay, [polygon_px], (0, 0, 200))
        out = cv2.addWeighted(overlay, 0.18, out, 0.82, 0)
        cv2.polylines(out, [polygon_px], True, (0, 0, 255), 2, cv2.LINE_AA)
    for i, (x1, y1, x2, y2) in enumerate(detections.xyxy.astype(int)):
        inside = bool(in_zone[i]) if in_zone is not None else False
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255) if inside else (0, 200, 0), 2)
    if tracks.tracker_id is not None:
        for tid, (x1, y1, _, _) in zip(tracks.tracker_id, tracks.xyxy.astype(int)):
            cv2.putText(out, f"#{tid}", (x1, max(y1 - 4, 34)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1,
                        cv2.LINE_AA)
    cv2.rectangle(out, (0, 0), (out.shape[1], 24), (0, 0, 0), -1)
    cv2.putText(out, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


MAX_PHOTO_PIXELS = 50_000_000  # a 50-megapixel phone photo; decoded 150 MB at most
MAX_PHOTO_SIDE = 16384


class PhotoTooLarge(ValueError):
    """More pixels than a photo may have (a decompression bomb, or a panorama): refused before decoding."""


def check_pixels(data: bytes) -> tuple[int, int]:
    """The image's size read from its header only (Pillow opens lazily); refuses what would be too big to decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise PhotoTooLarge(f"photo has more than {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels; at most "
                            f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels (send a smaller picture)") from None
    except (OSError, SyntaxError, ValueError):
        raise ValueError("photo could not be read; the file is damaged or not a JPEG/PNG image") from None
    if w > MAX_PHOTO_SIDE or h > MAX_PHOTO_SIDE or w * h > MAX_PHOTO_PIXELS:
        raise PhotoTooLarge(f"photo has {w}x{h} pixels; at most {MAX_PHOTO_PIXELS // 1_000_000} megapixels and "
                         f"{MAX_PHOTO_SIDE} pixels a side (send a smaller picture)")
    return w, h


class EvidenceStore:
    """Evidence files (JPEG snapshots, photos, MP4 clips) named by the hash of their bytes: stored once."""

    def __init__(self, directory: Path, quality: int = 85):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quality = quality

    def save_jpeg(self, image: np.ndarray) -> str:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return self.save_bytes(buf.tobytes(), "jpg")

    def save_bytes(self, data: bytes, ext: str) -> str:
        if ext not in MEDIA_TYPES:
            raise ValueError(f"unsupported evidence type {ext!r}; one of {sorted(MEDIA_TYPES)}")
        name = hashlib.sha256(data).hexdigest()[:32] + "." + ext
        path = self.dir / name
        if not path.exists():
            tmp = self.dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_bytes(data)
            tmp.replace(path)
        return name

    def save_photo(self, data: bytes, max_bytes: int = 10 << 20) -> str:
        """A worker's photo; only real JPEG or PNG files are accepted."""
        if len(data) > max_bytes:
            raise ValueError(f"photo too large ({len(data)} bytes); at most {max_bytes} bytes")
        if data[:3] == b"\xff\xd8\xff":
            ext = "jpg"
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            ext = "png"
        else:
            raise ValueError("photo must be a JPEG or PNG image (send the file's bytes as the request body)")
        check_pixels(data)  # before any decode: a 414 KiB PNG can hold 20000x20000 pixels (2 GB once decoded)
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError("photo could not be decoded; the file is damaged")
        return self.save_bytes(data, ext)

    def path(self, name: str) -> Path | None:
        """The file for a name from a case, or None; refuses anything that is not one of ours.

        Never a symlink (lstat): a link planted in the evidence folder must not serve a file from elsewhere.
        """
        if not NAME.match(name):
            return None
        p = self.dir / name
        try:
            st = os.lstat(p)
        except OSError:
            return None
        return p if stat.S_ISREG(st.st_mode) else None

    @staticmethod
    def media_type(name: str) -> str:
        return MEDIA_TYPES[name.rsplit(".", 1)[-1]]

    def sweep(self, keep_until: Callable[[list[str]], dict[str, float | None]], unreferenced_days: float,
              now: float | None = None) -> list[str]:
        """Retention: delete files whose keep-until has passed, and unreferenced ones older than the limit.

        ``keep_until`` answers, per name, until when a case needs the file (inf while the case is open).
        """
        now = time.time() if now is None else now
        names = [p.name for p in self.dir.iterdir() if NAME.match(p.name)]
        deleted = []
        for chunk in (names[i:i + 500] for i in range(0, len(names), 500)):
            for name, until in keep_until(chunk).items():
                path = self.dir / name
                try:
                    expired = (until is not None and until < now) or (
                        until is None and path.stat().st_mtime < now - unreferenced_days * 86400)
                    if expired:
                        path.unlink()
                        deleted.append(name)
                except FileNotFoundError:
                    continue
        return deleted
