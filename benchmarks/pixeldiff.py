"""Benchmark: Diffie's pixel diff vs the PyPI ``pixelmatch`` port on a 1920x1080 pair.

    python -m benchmarks.pixeldiff [--repeats N] [--pypi-repeats N]

The pair is built from pixelmatch's own test fixtures (``tests/fixtures/pixelmatch``):
the fixture pairs are laid side by side, row after row, on a white 1920x1080 canvas, so the
pair mixes text, maps, gradients, a photo-like image and semi-transparent pixels (about 8.5%
of the pixels differ). Every figure is the median of the repeats, all measured in this run;
wall-clock figures (the last line) are printed next to this process's CPU time, because on a
shared machine the wall clock also counts time spent waiting for a core.
The PyPI port is timed on the whole image too (it is slow, so with fewer repeats), without
an output image, against Diffie without an output image. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from diffie.compare.pixeldiff import pixelmatch

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pixelmatch"
PAIRS = [("1a", "1b"), ("3a", "3b"), ("7a", "7b"), ("4a", "4b"), ("6a", "6b"), ("2a", "2b"), ("5a", "5b")]
WIDTH, HEIGHT = 1920, 1080


def _load(name: str) -> np.ndarray:
    with Image.open(FIXTURES / f"{name}.png") as im:
        return np.asarray(im.convert("RGBA"))


def build_pair(width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Two RGBA images: the fixture pairs tiled row by row on a white canvas."""
    a = np.full((height, width, 4), 255, dtype=np.uint8)
    b = a.copy()
    images = [(_load(p), _load(q)) for p, q in PAIRS]
    x = y = row_height = i = 0
    while y < height:
        ia, ib = images[i % len(images)]
        i += 1
        h, w = ia.shape[:2]
        if x + w > width:
            x, y, row_height = 0, y + row_height, 0
            if y >= height:
                break
        hh, ww = min(h, height - y), min(w, width - x)
        a[y : y + hh, x : x + ww] = ia[:hh, :ww]
        b[y : y + hh, x : x + ww] = ib[:hh, :ww]
        x += w
        row_height = max(row_height, h)
    return a, b


def _median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU (this process) milliseconds per call."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21, help="Diffie repeats (default 21)")
    parser.add_argument("--pypi-repeats", type=int, default=2, help="PyPI pixelmatch repeats (default 2)")
    args = parser.parse_args(argv)

    from pixelmatch.core import pixelmatch as pypi_pixelmatch

    a, b = build_pair()
    out = np.zeros_like(a)
    count = pixelmatch(a, b)
    legacy = pixelmatch(a, b, checkerboard=False)
    a_bytes, b_bytes = a.tobytes(), b.tobytes()
    print(f"pair: {WIDTH}x{HEIGHT} from {FIXTURES}, "
          f"{int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))} pixels differ in value")
    print(f"mismatch count: diffie {count} (7.x), diffie legacy {legacy} (5.x)")

    if hasattr(os, "getloadavg"):
        one, five, fifteen = os.getloadavg()
        print(f"load average at start: {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs")

    pixelmatch(a, b, out)  # warm-up
    diffie_ms, diffie_cpu = _median_ms(lambda: pixelmatch(a, b), args.repeats)
    diffie_out_ms, diffie_out_cpu = _median_ms(lambda: pixelmatch(a, b, out), args.repeats)
    print(f"diffie, no output:   {diffie_ms:8.1f} ms wall, {diffie_cpu:8.1f} ms CPU "
          f"(medians of {args.repeats})")
    print(f"diffie, with output: {diffie_out_ms:8.1f} ms wall, {diffie_out_cpu:8.1f} ms CPU "
          f"(medians of {args.repeats})")

    pypi_counts: list[int] = []
    pypi_ms, pypi_cpu = _median_ms(
        lambda: pypi_counts.append(pypi_pixelmatch(a_bytes, b_bytes, WIDTH, HEIGHT, None)), args.pypi_repeats
    )
    agree = "equal" if pypi_counts[0] == legacy else f"DIFFERENT from diffie legacy ({legacy})"
    print(f"pypi pixelmatch, no output, whole image: {pypi_ms:8.1f} ms wall, {pypi_cpu:8.1f} ms CPU "
          f"(medians of {args.pypi_repeats}), count {pypi_counts[0]} ({agree})")
    speedup = pypi_ms / diffie_ms
    print(f"speedup (pypi / diffie, no output): {speedup:.0f}x wall, {pypi_cpu / diffie_cpu:.0f}x CPU")
    print(f"pixeldiff: diffie_ms={diffie_ms:.1f} diffie_out_ms={diffie_out_ms:.1f} "
          f"pypi_ms={pypi_ms:.1f} speedup={speedup:.1f}")


if __name__ == "__main__":
    main()
