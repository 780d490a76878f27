"""Fetch one file over HTTP(S) or file://, checking its MD5 before it takes its final name."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from resnetlab.data.messages import one_line
from resnetlab.errors import DataError
from resnetlab.files import atomic_path

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def download(url: str, dest: Path, md5: str) -> Path:
    """Download `url` to `dest` through a temporary file beside it.

    The MD5 is computed while streaming; on a mismatch the temporary file is deleted and DataError names the
    expected and actual digests. Only a verified file is renamed to `dest`, so `dest` is never partial.
    """
    digest = hashlib.md5()
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None, unit="B", unit_scale=True, desc=dest.name, disable=None
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (OSError, ValueError) as err:  # URLError is an OSError; a malformed URL is a ValueError
            reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
            raise DataError(f"cannot download {url}: {one_line(reason)}") from err
        actual = digest.hexdigest()
        if actual != md5:
            raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {actual}; the download was deleted")
    return dest
