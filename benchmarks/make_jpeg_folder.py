"""Write an image folder of photo-sized JPEGs for input-pipeline benchmarks, without downloading anything.

    python benchmarks/make_jpeg_folder.py OUT [--source cifar10-jpeg.tar.xz] [--train 3000 --test 500]

Each image is a CIFAR image (from any source `resnetlab` reads: the JPEG archive, `cifar10`, a folder) or, with
`--source noise`, a random colour field, scaled up to a random size between --min-side and --max-side pixels
on each side (so aspect ratios vary, as in ImageNet), with film-grain noise added so that the JPEG files have
the bit rate of photographs (ImageNet's training JPEGs average ~110 KB at ~400x350 px, ~0.8 byte/pixel)
instead of the few KB a blurry upscale would compress to: the defaults give ~0.53 byte/pixel, ~83 KB.
Layout: OUT/{train,test}/<class>/<i>.jpg.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def source_images(source: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`count` small uint8 (N, h, w, 3) images with labels and class names."""
    rng = np.random.default_rng(seed)
    if source == "noise":
        classes = [f"class{i}" for i in range(10)]
        base = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
        return base, rng.integers(0, len(classes), size=count), classes
    from resnetlab.data import load_dataset

    dataset = load_dataset(source)
    pick = rng.choice(len(dataset.train), size=count, replace=count > len(dataset.train))
    return dataset.train.images[pick], dataset.train.labels[pick], dataset.classes


def photo_sized(small: np.ndarray, width: int, height: int, grain: float, rng: np.random.Generator) -> Image.Image:
    """Upscale (bicubic) and add Gaussian grain, which gives the JPEG a photograph's bit rate."""
    big = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    big += rng.normal(0.0, grain, size=big.shape).astype(np.float32)
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", default="noise", help="noise, or a data source resnetlab reads (archive, cifar10)")
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--test", type=int, default=500, help="test images")
    parser.add_argument("--min-side", type=int, default=300)
    parser.add_argument("--max-side", type=int, default=500)
    parser.add_argument("--grain", type=float, default=12.0, help="std of the added noise, in 0..255 levels")
    parser.add_argument("--quality", type=int, default=94, help="JPEG quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    images, labels, classes = source_images(args.source, args.train + args.test, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    total_bytes = total_pixels = 0
    for index, (small, label) in enumerate(zip(images, labels)):
        split = "train" if index < args.train else "test"
        folder = args.out / split / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in rng.integers(args.min_side, args.max_side + 1, size=2))
        path = folder / f"{index:06d}.jpg"
        photo_sized(small, width, height, args.grain, rng).save(path, quality=args.quality)
        total_bytes += path.stat().st_size
        total_pixels += width * height
    summary = {"images": len(images), "mean_kb": total_bytes / len(images) / 1e3,
               "bytes_per_pixel": total_bytes / total_pixels, "seconds": time.perf_counter() - started}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
