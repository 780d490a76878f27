"""Decoding image files into one uint8 array, in parallel threads (Pillow releases the GIL while it decodes)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from resnetlab.data.messages import is_reporting, one_line
from resnetlab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
_CHUNK = 256

# What Pillow raises on files it cannot read: unknown formats, truncated data, bad headers, decompression bombs.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix; other files in class folders are ignored."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def default_workers() -> int:
    """Threads for decoding: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def decode_image(name: str, payload: Path | bytes, size: int, resize: bool = True) -> np.ndarray:
    """One image as uint8 (size, size, 3): converted to RGB, resized (bilinear) when its size differs, or
    refused when ``resize`` is False.

    Truncated files fail here because Pillow's ImageFile.LOAD_TRUNCATED_IMAGES is left at False.
    """
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as im:
            im.load()
            if not resize and im.size != (size, size):
                raise DataError(f"image {name} is {im.size[0]}x{im.size[1]}, not {size}x{size} "
                                "(other sizes are refused by --strict-size)")
            return _to_array(im, size)
    except _DECODE_ERRORS as err:
        raise DataError(f"cannot decode image {name}: {one_line(err)}; remove or replace that file") from err


def decode_images(items: Sequence[tuple[str, Path | bytes]], size: int, num_workers: int | None = None,
                  resize: bool = True, desc: str = "decoding") -> np.ndarray:
    """Decode (name, path-or-bytes) items into uint8 (N, size, size, 3), in item order.

    While a load reports its progress (``messages.reporting``), a bar is drawn on a terminal (never into a
    pipe or a log file)."""
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    with tqdm(total=len(items), desc=desc, unit="img", leave=False, dynamic_ncols=True,
              disable=None if is_reporting() else True) as bar:

        def run(start: int) -> None:
            end = min(start + _CHUNK, len(items))
            for i in range(start, end):
                out[i] = decode_image(*items[i], size, resize)
            bar.update(end - start)

        _parallel(run, len(items), num_workers)
    return out


def resize_images(images: np.ndarray, size: int, num_workers: int | None = None) -> np.ndarray:
    """Resize uint8 (N, H, W, 3) images to (N, size, size, 3) with the same bilinear filter as decoding."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)

    def run(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(images))):
            out[i] = _to_array(Image.fromarray(images[i]), size)

    _parallel(run, len(images), num_workers)
    return out


def _to_array(im: Image.Image, size: int) -> np.ndarray:
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # the route Pillow asks for; converting to RGB directly warns
    if im.mode != "RGB":
        im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _parallel(run: Callable[[int], None], n: int, num_workers: int | None) -> None:
    """Call run(start) for every chunk start in 0..n, on a thread pool when it is worth one."""
    workers = num_workers or default_workers()
    starts = range(0, n, _CHUNK)
    if workers <= 1 or n <= _CHUNK:
        for start in starts:
            run(start)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(run, starts):  # iterating re-raises the first worker error
            pass
