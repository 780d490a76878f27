"""Small builders shared by the data tests: random images, encoded files, archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def random_images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def encode(image: np.ndarray, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def pack(folder: Path, archive: Path, arcname: str | None = None) -> Path:
    """Put `folder` into a .tar.* or .zip archive, under `arcname` (default: its own name)."""
    arcname = folder.name if arcname is None else arcname
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder).as_posix()
                zf.write(path, f"{arcname}/{rel}" if arcname else rel)
    else:
        mode = {".xz": "w:xz", ".gz": "w:gz", ".tgz": "w:gz"}.get(archive.suffix, "w")
        with tarfile.open(archive, mode) as tar:
            tar.add(folder, arcname=arcname or ".")
    return archive


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
