"""The official-format loader, on small tarballs written by the tests, served by file:// and loopback HTTP."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from data_helpers import md5_of

from resnetlab.data import cifar, load_dataset
from resnetlab.data.cifar import load_cifar
from resnetlab.errors import DataError


def _check(ds, expected) -> None:
    np.testing.assert_array_equal(ds.train.images, expected["train"][0])
    np.testing.assert_array_equal(ds.train.labels, expected["train"][1])
    np.testing.assert_array_equal(ds.test.images, expected["test"][0])
    np.testing.assert_array_equal(ds.test.labels, expected["test"][1])
    assert ds.classes == expected["classes"]
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64


def _leftovers(cache: Path) -> list[str]:
    """Everything in the cache except finished array entries and the hash memo."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def http_mirror(tmp_path: Path):
    """A loopback HTTP server on 127.0.0.1 serving tmp_path/"mirror"; yields its base URL."""
    root = tmp_path / "mirror"
    root.mkdir(exist_ok=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_cifar10_from_file_url(cifar_tarball, isolated_env):
    tarball, expected = cifar_tarball("cifar10")
    ds = load_cifar("cifar10", isolated_env, url=tarball.parent.as_uri(), md5=md5_of(tarball))
    _check(ds, expected)
    assert ds.name == "cifar10" and len(ds.train) == 20
    assert (isolated_env / tarball.name).exists()
    assert not [p for p in isolated_env.iterdir() if p.name.startswith(".")]  # no temp or extracted leftovers


def test_cifar10_over_loopback_http(cifar_tarball, http_mirror, isolated_env):
    tarball, expected = cifar_tarball("cifar10")
    ds = load_cifar("cifar10", isolated_env, url=http_mirror, md5=md5_of(tarball))
    _check(ds, expected)


def test_checksum_mismatch_deletes_download(cifar_tarball, http_mirror, isolated_env):
    tarball, _ = cifar_tarball("cifar10")
    with pytest.raises(DataError, match=rf"expected md5 {'0' * 32}, got {md5_of(tarball)}"):
        load_cifar("cifar10", isolated_env, url=http_mirror, md5="0" * 32)
    assert _leftovers(isolated_env) == []


def test_corrupt_tarball_leaves_nothing_extracted(tmp_path, isolated_env):
    bad = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 100)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        load_cifar("cifar10", isolated_env, url=bad.parent.as_uri(), md5=md5_of(bad))
    assert _leftovers(isolated_env) == ["cifar-10-python.tar.gz"]  # the verified download, nothing extracted


def test_cifar100_fine_labels(cifar_tarball, isolated_env):
    tarball, expected = cifar_tarball("cifar100")
    ds = load_cifar("cifar100", isolated_env, url=tarball.parent.as_uri(), md5=md5_of(tarball))
    _check(ds, expected)
    assert len(ds.classes) == 100 and ds.name == "cifar100"


def test_load_dataset_uses_env_url_then_cache(cifar_tarball, monkeypatch, isolated_env):
    tarball, expected = cifar_tarball("cifar10")
    monkeypatch.setenv("RESNETLAB_CIFAR_URL", tarball.parent.as_uri())
    release = cifar.RELEASES["cifar10"]
    monkeypatch.setitem(cifar.RELEASES, "cifar10", cifar.Release(**{**release.__dict__, "md5": md5_of(tarball)}))
    _check(load_dataset(None), expected)
    tarball.unlink()
    (isolated_env / tarball.name).unlink()
    _check(load_dataset("cifar10", download=False), expected)  # from the array cache alone


def test_missing_without_download(isolated_env):
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", download=False)


def test_unreachable_mirror(isolated_env):
    with pytest.raises(DataError, match=r"cannot download .*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10")


def test_cached_tarball_with_wrong_checksum_is_refused(cifar_tarball, isolated_env):
    tarball, _ = cifar_tarball("cifar10", folder=isolated_env)
    with pytest.raises(DataError, match=rf"{tarball}.*expected md5 {cifar.RELEASES['cifar10'].md5}.*delete it and "
                                        "retry"):
        load_dataset("cifar10", download=False)


def test_official_tarball_by_path_needs_official_checksum_and_says_it_is_not_the_release(cifar_tarball):
    """A tarball the user gave is not deleted and retried: it is not the official release, so the way forward is
    another copy of it, or another kind of data."""
    tarball, _ = cifar_tarball("cifar10")
    with pytest.raises(DataError, match="checksum mismatch") as refused:
        load_dataset(str(tarball))
    message = str(refused.value)
    assert "not the official release" in message and "give an image folder" in message
    assert "cifar-10-python.tar.gz" in message.split("download it again from")[1]
    assert "delete it" not in message


def test_resized_release(cifar_tarball, isolated_env):
    tarball, expected = cifar_tarball("cifar10")
    ds = load_cifar("cifar10", isolated_env, url=tarball.parent.as_uri(), md5=md5_of(tarball), image_size=16)
    assert ds.train.images.shape == (20, 16, 16, 3)
    np.testing.assert_array_equal(ds.train.labels, expected["train"][1])
