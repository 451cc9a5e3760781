"""Pixel-area limits: full pages are clipped to an area, the diff never decodes a huge image."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffie.browser.stabilise import area_clip
from diffie.compare.regions import compare_files
from diffie.errors import ImageError


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims ``width``x``height`` (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def small_png(path: Path) -> Path:
    Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(path)
    return path


def test_area_clip_keeps_the_top_of_the_page_within_the_area() -> None:
    assert area_clip(1280, 800, 8_000_000) is None
    clip = area_clip(2560, 120_000, 8_000_000)
    assert clip is not None
    assert (clip.width, clip.height, clip.full) == (2560, 3125, (2560, 120_000))
    assert clip.width * clip.height <= 8_000_000
    wide = area_clip(10_000_000, 800, 1_000_000)   # absurdly wide: narrowed too
    assert wide is not None and wide.width * wide.height <= 1_000_000 and wide.height >= 800
    assert clip.as_rect() == {"x": 0, "y": 0, "width": 2560, "height": 3125}


def test_an_image_over_the_area_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    big = png_header_only(tmp_path / "big.png", 4000, 4000)
    with pytest.raises(ImageError, match=r"4000x4000 = 16,000,000 pixels, more than the limit "
                                         r"of 8,000,000 \(DIFFIE_MAX_SCREENSHOT_PIXELS\)"):
        compare_files(small_png(tmp_path / "a.png"), big)


def test_a_decompression_bomb_is_an_image_error_not_an_internal_error(tmp_path: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 30_000, 30_000)
    with pytest.raises(ImageError, match="too large to decode safely.*DIFFIE_MAX_SCREENSHOT"):
        compare_files(small_png(tmp_path / "a.png"), bomb, max_pixels=10**10)


def test_a_clipped_full_page_that_grew_is_a_size_change(tmp_path: Path) -> None:
    """Both sides clipped to the same area look identical; the page sizes still tell."""
    from diffie.artifacts import ArtifactDir
    from diffie.capture import Capture, Screenshot
    from diffie.compare.findings import compare_runs

    out = ArtifactDir(tmp_path).ensure()
    small_png(out.path("b.png"))
    small_png(out.path("h.png"))

    def cap(side: str, name: str, full: list[int] | None) -> Capture:
        c = Capture(flow="f", viewport="desktop", side=side)  # type: ignore[arg-type]
        c.screenshots.append(Screenshot(name="s", step=0, artifact=name, width=10, height=10,
                                        clipped_from=full))
        return c

    same, _ = compare_runs([cap("base", "b.png", [10, 900])], [cap("head", "h.png", [10, 900])],
                           out)
    assert same == []
    (finding,), _ = compare_runs([cap("base", "b.png", [10, 900])],
                                 [cap("head", "h.png", [10, 1200])], out)
    assert finding.kind == "size_change"
    assert "from 10x900 to 10x1200" in finding.message
    assert "DIFFIE_MAX_SCREENSHOT_PIXELS" in finding.message
    assert finding.details["clipped_from"] == {"base": [10, 900], "head": [10, 1200]}
