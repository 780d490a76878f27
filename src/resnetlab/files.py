"""Nothing half-written: every file resnetlab writes goes to a temporary file beside its destination and is renamed
into place in one step, so a reader, a kill or a full disk sees the old file or the new one, never a torn one.

``atomic_path`` is the one mechanism; ``atomic_write_text`` and ``write_json`` are its two common uses. A file
written by a library (``savefig``, ``np.save``, ONNX) is written to the temporary path the context yields.
Checkpoints are directories: ``train/checkpoint.py`` writes their files into a temporary directory and renames it,
with ``fsync_tree`` from here. ``check_output_file`` refuses, in one line, a destination that cannot be written (a
folder where a file is asked for, a file on the way), so that a command can check it before its slow part;
``atomic_path`` checks it too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resnetlab.errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file is flushed to
    disk and renamed to ``path``, otherwise it is deleted and ``path`` is left as it was.

    The temporary name keeps ``path``'s suffix (``suffix`` overrides it): matplotlib and numpy choose the format
    from it. The file gets the permissions of a normally created one (``usual_permissions``).
    """
    path = check_output_file(path, access=False)  # a read-only folder is the caller's to handle (OSError)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {path.parent}: {error.strerror or error}") from None
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix,
                                dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        usual_permissions(temporary)
        fsync_tree(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # gone already after a successful rename


def check_output_file(path: str | os.PathLike, *, example: str = "", access: bool = True) -> Path:
    """``path`` if a file can be written there; else UserError saying why, before anything slow is done: ``path``
    is a folder (``example``: a file name to suggest inside it), a folder on its way is a file, or (``access``)
    the folder it would go in is not writable."""
    path = Path(path)
    if path.is_dir():
        inside = f", e.g. {path / example}" if example else " inside it"
        raise UserError(f"{path} is a folder; give a file name{inside}")
    existing = next(p for p in path.parents if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise UserError(f"cannot write {path}: {existing} is a file, not a folder")
    if access and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: no permission to write in {existing}")
    return path


def usual_permissions(path: Path) -> None:
    """Give a file, or a directory and the files directly in it, the mode that ``open`` and ``mkdir`` would under
    the process's umask. ``mkstemp``/``mkdtemp`` create 0600/0700, and safetensors' ``save_file`` writes 0600 even
    over a file that had other bits, so without this a checkpoint or a published weight file is unreadable to
    everyone but its owner (another user of a shared machine, a container running as another uid)."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [*path.iterdir(), path] if path.is_dir() else [path]:
        if item.is_dir():
            os.chmod(item, 0o777 & ~umask)
        elif item.is_file():
            os.chmod(item, 0o666 & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def fsync_tree(path: Path) -> None:
    """Flush a file, or a directory and the files directly in it, to disk (best effort: some file systems refuse)."""
    path = Path(path)
    for item in [*path.iterdir(), path] if path.is_dir() else [path]:
        if not (item.is_file() or item == path):
            continue
        try:
            fd = os.open(item, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
