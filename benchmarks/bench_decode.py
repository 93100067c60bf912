"""How long preparing each image data set's decoded cache takes on this machine.

Writes ``--images`` synthetic JPEGs at each data set's typical source size (smooth random
content, quality 90, so file sizes are photo-like), decodes them with the package's own reader
(:func:`kdfair_utils.image_folders._decoded_chunks`: PIL, largest central square, bilinear
resize to 64 px, :data:`~kdfair_utils.image_folders.DECODE_THREADS` threads) and with one
thread, and prints the rates, their ratio, and the projected preparation time of each full data
set. The files are read from the page cache, so disk reads are not included: on a cold disk
ImageNet's 150 GB add their read time (about 17 min at 150 MB/s).

Usage: python benchmarks/bench_decode.py [--images 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from kdfair_utils import image_folders as imf

# (typical source width, height), images to decode (all splits the profile reads)
SOURCES = {"imagenet": ((500, 375), 1_281_167 + 50_000), "tinyimagenet": ((64, 64), 100_000 + 10_000),
           "celeba": ((178, 218), 202_599)}


def write_jpegs(folder: Path, size: tuple[int, int], n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs of ``size`` (width, height): random 8x8 blocks upsampled smoothly, quality 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (max(2, size[1] // 8), max(2, size[0] // 8), 3), dtype=np.uint8))
        path = folder / f"{i:06d}.JPEG"
        small.resize(size, Image.Resampling.BICUBIC).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def rate(files: list[Path], threads: int) -> float:
    """Images per second through the package's chunked, threaded decoder."""
    saved = imf.DECODE_THREADS
    imf.DECODE_THREADS = threads
    try:
        start = time.perf_counter()
        rows = sum(len(chunk) for _, chunk in imf._decoded_chunks(files, 64, 0, False, "bench"))
        return rows / (time.perf_counter() - start)
    finally:
        imf.DECODE_THREADS = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="synthetic JPEGs per data set (default 256)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    print(f"decoding to 64 px with {imf.DECODE_THREADS} threads (this machine's usable cores, at most 8) "
          f"vs 1 thread, {args.images} images per data set")
    print(f"{'data set':14}{'source px':>11}{'KB/file':>9}{'img/s':>9}{'1 thread':>10}{'ratio':>7}{'projected':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ((w, h), total) in SOURCES.items():
            folder = Path(tmp) / name
            folder.mkdir()
            files = write_jpegs(folder, (w, h), args.images)
            kb = np.mean([f.stat().st_size for f in files]) / 1024
            rate(files[: min(16, len(files))], imf.DECODE_THREADS)  # warm-up: imports, page cache
            threaded, single = rate(files, imf.DECODE_THREADS), rate(files, 1)
            hours = total / threaded / 3600
            print(f"{name:14}{f'{w}x{h}':>11}{kb:9.0f}{threaded:9.0f}{single:10.0f}{threaded / single:6.2f}x"
                  f"{hours:9.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
