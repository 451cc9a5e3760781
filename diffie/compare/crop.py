"""One picture of a visual finding for a reader with little room (an agent's context): the
area around its changed regions, base | head | diff side by side, scaled to fit.

Images are read only from the run's own artifact folder (names from the verdict; anything
resolving outside it is ignored) and bounded in size before they are decoded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

PAD = 24                    # pixels of context around the changed area
GAP = 8
MAX_SIDE = 1200             # the composed picture's longest side
MAX_SOURCE_PIXELS = 40_000_000


def _inside(run_dir: Path, name: Any) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    root = run_dir.resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _open(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_SOURCE_PIXELS:
                return None
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def changed_area(regions: list[dict[str, Any]], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box around every region plus :data:`PAD`, inside ``size``; the whole image when
    there are no regions."""
    width, height = size
    boxes = [(int(r["x"]), int(r["y"]), int(r["x"]) + int(r["width"]),
              int(r["y"]) + int(r["height"])) for r in regions
             if all(isinstance(r.get(k), int) for k in ("x", "y", "width", "height"))]
    if not boxes:
        return 0, 0, width, height
    left = max(0, min(b[0] for b in boxes) - PAD)
    top = max(0, min(b[1] for b in boxes) - PAD)
    right = min(width, max(b[2] for b in boxes) + PAD)
    bottom = min(height, max(b[3] for b in boxes) + PAD)
    if right <= left or bottom <= top:
        return 0, 0, width, height
    return left, top, right, bottom


def finding_picture(run_dir: Path, finding: dict[str, Any]) -> bytes | None:
    """PNG bytes of base | head | diff around the finding's regions, or None when the finding
    has no screenshots to show."""
    details = finding.get("details") or {}
    images = [img for img in (_open(p) for p in (_inside(run_dir, details.get(k))
                                                 for k in ("base", "head", "diff")) if p)
              if img is not None]
    if not images:
        return None
    box = changed_area(list(finding.get("regions") or []), images[-1].size)
    crops = [img.crop(box) for img in images]
    width = sum(c.width for c in crops) + GAP * (len(crops) - 1)
    height = max(c.height for c in crops)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for crop in crops:
        sheet.paste(crop, (x, 0))
        x += crop.width + GAP
    scale = min(1.0, MAX_SIDE / max(width, height))
    if scale < 1.0:
        sheet = sheet.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                             Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
