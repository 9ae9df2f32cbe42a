"""Evidence images: the analysed frame with boxes and the zone drawn, stored by content hash."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np

from vision.detections import Detections

NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")


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


class EvidenceStore:
    """JPEG files named by the hash of their bytes: the same picture is stored once."""

    def __init__(self, directory: Path, quality: int = 85):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quality = quality

    def save_jpeg(self, image: np.ndarray) -> str:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        data = buf.tobytes()
        name = hashlib.sha256(data).hexdigest()[:32] + ".jpg"
        path = self.dir / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return name

    def path(self, name: str) -> Path | None:
        """The file for a name from a case, or None; refuses anything that is not one of ours."""
        if not NAME.match(name):
            return None
        p = self.dir / name
        return p if p.is_file() else None
