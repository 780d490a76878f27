"""Reading and extracting tar and zip archives without letting any member escape its target.

Every member is checked before anything is read or written: absolute paths, `..` components, links and
device files are refused with a DataError naming the member, so a hostile archive fails as a whole.
"""

from __future__ import annotations

import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from resnetlab.data.messages import one_line
from resnetlab.errors import DataError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError, OSError)


def is_archive(path: Path) -> bool:
    """Whether the file name ends in a supported archive suffix."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The components of a member name, refusing names that would land outside the extraction folder."""
    posix = name.replace("\\", "/")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in parts:
        raise DataError(f"unsafe member {name!r} in {archive}: paths must stay inside the archive")
    return parts


def read_members(archive: Path, wanted: Callable[[tuple[str, ...]], bool]) -> tuple[dict[str, bytes], set[str]]:
    """Read an archive in one pass: the bytes of each wanted regular file, and every folder name.

    Names come back as '/'-joined components without a leading './'. One sequential pass matters for
    .tar.xz, where seeking back to a member means decompressing again from the start.
    """
    try:
        if archive.name.lower().endswith(".zip"):
            return _read_zip(archive, wanted)
        return _read_tar(archive, wanted)
    except _READ_ERRORS as err:
        raise DataError(f"cannot read archive {archive}: {one_line(err)}") from err


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract a tar archive into `dest` after checking every member.

    Python's "data" filter (3.12, backported to 3.11.4+) repeats these checks and also drops unsafe permission
    bits; on older versions our own checks are what keeps members inside `dest`.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(archive, member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    except _READ_ERRORS as err:
        raise DataError(f"cannot extract archive {archive}: {one_line(err)}") from err


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    parts = member_parts(archive, member.name)
    if member.issym() or member.islnk():
        raise DataError(f"unsafe member {member.name!r} in {archive}: links are not allowed")
    if not (member.isreg() or member.isdir()):
        raise DataError(f"unsafe member {member.name!r} in {archive}: only files and folders are allowed")
    return parts


def _read_tar(archive: Path, wanted: Callable[[tuple[str, ...]], bool]) -> tuple[dict[str, bytes], set[str]]:
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            parts = _check_tar_member(archive, member)
            if member.isdir():
                folders.add("/".join(parts))
            elif parts and wanted(parts):
                handle = tar.extractfile(member)
                assert handle is not None  # regular files always have data
                files["/".join(parts)] = handle.read()
    return files, folders


def _read_zip(archive: Path, wanted: Callable[[tuple[str, ...]], bool]) -> tuple[dict[str, bytes], set[str]]:
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = member_parts(archive, info.filename)
            file_type = stat.S_IFMT(info.external_attr >> 16)  # Unix zips keep st_mode here; 0 when unknown
            if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                kind = "links are not" if file_type == stat.S_IFLNK else "only files and folders are"
                raise DataError(f"unsafe member {info.filename!r} in {archive}: {kind} allowed")
            if info.is_dir():
                folders.add("/".join(parts))
            elif parts and wanted(parts):
                files["/".join(parts)] = zf.read(info)
    return files, folders
