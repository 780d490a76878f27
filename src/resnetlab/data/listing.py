"""The file listing of an image folder, made once and kept in the cache: `<root>/{train,test}/<class>/<image>`.

Walking 1.28 million files takes from seconds to minutes (more on network storage); reading the cached
listing back takes about a second. A folder's modification time changes whenever an entry is added to it,
removed or renamed, so the listing stays valid exactly as long as every folder it walked keeps its mtime: one
stat per folder (about 2,000 for ImageNet) instead of a walk. A file rewritten in place keeps the listing
valid, and is read afresh at its next use anyway. Paths are kept as one NumPy bytes array per split: DataLoader
workers share it with the parent without the copy-on-write growth a list of Python strings causes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnetlab.data.cache import ensure_dir
from resnetlab.data.decode import is_image_name
from resnetlab.data.folder import SPLITS, directory_root, group_by_class, hidden
from resnetlab.errors import DataError
from resnetlab.files import atomic_write_text

LISTING_VERSION = 1


@dataclass
class FolderListing:
    """Class names, and per split the image paths (relative to `root`, '/'-separated) with their labels."""

    root: Path
    classes: list[str]
    paths: dict[str, np.ndarray]  # split -> bytes array of relative paths, in (class, file name) order
    labels: dict[str, np.ndarray]  # split -> int64 labels

    def count(self, split: str) -> int:
        return len(self.labels[split])

    def path(self, split: str, index: int) -> Path:
        return self.root / self.paths[split][index].decode()


def list_image_folder(path: Path, cache_dir: Path) -> FolderListing:
    """The listing of an image folder: from the cache while no folder in it changed, else walked and cached."""
    given = directory_root(Path(path))  # messages name the folder as the user wrote it
    root = given.resolve()
    cache_file = cache_dir / "listings" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.json"
    stored = _read(cache_file, root)
    if stored is not None:
        return stored
    files, folders, mtimes = _walk(root)
    classes, grouped = group_by_class(files, folders, str(given), lambda rel: str(given / rel))
    table = {"version": LISTING_VERSION, "root": str(root), "folders": mtimes, "classes": classes,
             **{split: [[rel, label] for rel, label in grouped[split]] for split in SPLITS}}
    try:
        ensure_dir(cache_file.parent)
        atomic_write_text(cache_file, json.dumps(table, separators=(",", ":")))
    except (OSError, DataError):
        pass  # the listing only saves time
    return _from_table(root, table)


def _walk(root: Path) -> tuple[list[str], set[str], dict[str, int]]:
    """Image paths and folders under root/{train,test}, relative to root, and the mtime of every folder walked.

    The mtimes are read before the entries, so a change during the walk makes the next check fail."""
    files: list[str] = []
    folders: set[str] = set()
    mtimes = {".": os.stat(root).st_mtime_ns}
    pending = [split for split in SPLITS]
    while pending:
        rel_dir = pending.pop()
        mtimes[rel_dir] = os.stat(root / rel_dir).st_mtime_ns
        folders.add(rel_dir)
        with os.scandir(root / rel_dir) as entries:
            for entry in entries:
                if hidden(entry.name):
                    continue
                if entry.is_dir():  # follows links, as the in-memory loader's os.walk(followlinks=True) does
                    pending.append(f"{rel_dir}/{entry.name}")
                elif is_image_name(entry.name):
                    files.append(f"{rel_dir}/{entry.name}")
    return files, folders, mtimes


def _read(cache_file: Path, root: Path) -> FolderListing | None:
    try:
        table = json.loads(cache_file.read_text())
        if table.get("version") != LISTING_VERSION or table.get("root") != str(root):
            return None
        for rel_dir, mtime in table["folders"].items():
            if os.stat(root / rel_dir).st_mtime_ns != mtime:
                return None
        return _from_table(root, table)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or stale: list again


def _from_table(root: Path, table: dict) -> FolderListing:
    paths, labels = {}, {}
    for split in SPLITS:
        entries = table[split]
        paths[split] = np.array([rel.encode() for rel, _ in entries], dtype=bytes)
        labels[split] = np.array([label for _, label in entries], dtype=np.int64)
    return FolderListing(root, list(table["classes"]), paths, labels)
