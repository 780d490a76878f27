"""Every bad input raises DataError with one line that names the file, folder or member at fault."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

import pytest
from data_helpers import encode, pack, random_images

from resnetlab.data import load_dataset
from resnetlab.errors import DataError, UserError


def _raises(match: str, *args, **kwargs) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(*args, **kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UserError)
    return info.value


def test_truncated_jpeg(image_folder):
    root, _ = image_folder()
    bad = root / "train" / "dog" / "0001.jpg"
    bad.write_bytes(encode(random_images(1, 32)[0], "JPEG")[:-200])
    _raises(r"cannot decode image .*train/dog/0001\.jpg: .*; remove or replace that file$", root)


def test_text_file_named_jpg(image_folder):
    root, _ = image_folder()
    (root / "test" / "cat" / "oops.jpg").write_text("this is not a picture")
    _raises(r"test/cat/oops\.jpg", root)


def test_bad_image_inside_archive_names_member(image_folder, tmp_path):
    root, _ = image_folder()
    (root / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    archive = pack(root, tmp_path / "mini.tar.gz")
    _raises(rf"{archive}:folder/train/cat/bad\.png", archive)


def test_empty_class_folder(image_folder):
    root, _ = image_folder()
    (root / "train" / "empty").mkdir()
    (root / "test" / "empty").mkdir()
    _raises(r"class folder .*train/empty has no images", root)


def test_empty_class_folder_in_archive(image_folder, tmp_path):
    root, _ = image_folder()
    (root / "train" / "empty").mkdir()
    (root / "test" / "empty").mkdir()
    _raises(r"train/empty has no images", pack(root, tmp_path / "mini.tar"))


@pytest.mark.parametrize("pack_it", [False, True], ids=["folder", "archive"])
def test_one_class_is_not_a_classification_dataset(image_folder, tmp_path, pack_it):
    root, _ = image_folder(classes=["cat"])
    source = pack(root, tmp_path / "one.tar") if pack_it else root
    _raises(r"train has one class folder \(cat\); a classifier needs at least 2", source)


def test_one_class_is_refused_by_the_streamed_listing_too(image_folder, tmp_path):
    from resnetlab.data.listing import list_image_folder

    root, _ = image_folder(classes=["cat"])
    with pytest.raises(DataError, match="a classifier needs at least 2"):
        list_image_folder(root, tmp_path / "listing-cache")


def test_different_class_sets(image_folder):
    root, _ = image_folder()
    shutil.rmtree(root / "test" / "dog")
    (root / "test" / "zebra").mkdir()
    (root / "test" / "zebra" / "0.png").write_bytes(encode(random_images(1)[0]))
    _raises(r"only in train: dog; only in test: zebra", root)


def test_missing_test_folder(image_folder):
    root, _ = image_folder()
    shutil.rmtree(root / "test")
    _raises(rf"{root} has a train/ folder but no test/", root)


def test_no_train_folder(tmp_path):
    (tmp_path / "nothing").mkdir()
    _raises(rf"no train/ folder in {tmp_path / 'nothing'}", tmp_path / "nothing")


def test_missing_path(tmp_path):
    _raises(rf"data source not found: {tmp_path / 'nope.tar.xz'}", str(tmp_path / "nope.tar.xz"))


def test_unsupported_file(tmp_path):
    (tmp_path / "data.csv").write_text("a,b")
    _raises(r"data\.csv is neither a folder nor a supported archive", tmp_path / "data.csv")


def test_not_an_archive(tmp_path):
    (tmp_path / "fake.tar.xz").write_bytes(b"plain text")
    _raises(r"cannot read archive .*fake\.tar\.xz", tmp_path / "fake.tar.xz")


def _tar_with(tmp_path, member: tarfile.TarInfo, name: str = "evil.tar"):
    path = tmp_path / name
    good = encode(random_images(1)[0])
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("train/cat/0.png")
        info.size = len(good)
        tar.addfile(info, io.BytesIO(good))
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.png", tarfile.REGTYPE, r"'\.\./escape\.png'.*inside the archive"),
        ("train/../../escape.png", tarfile.REGTYPE, r"'train/\.\./\.\./escape\.png'"),
        ("/etc/absolute.png", tarfile.REGTYPE, r"'/etc/absolute\.png'"),
        ("train/cat/link.png", tarfile.SYMTYPE, r"'train/cat/link\.png'.*links"),
        ("train/cat/hard.png", tarfile.LNKTYPE, r"'train/cat/hard\.png'.*links"),
        ("train/cat/dev", tarfile.CHRTYPE, r"'train/cat/dev'.*only files and folders"),
        ("train/cat/fifo", tarfile.FIFOTYPE, r"'train/cat/fifo'"),
    ],
)
def test_unsafe_tar_members(tmp_path, name, kind, message):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = 1 if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "/etc/passwd"
    path = _tar_with(tmp_path, member)
    _raises(message, path)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()


@pytest.mark.parametrize("name", ["../escape.png", "/abs.png", "train/../../escape.png", "C:/windows.png"])
def test_unsafe_zip_names(tmp_path, name):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train/cat/0.png", encode(random_images(1)[0]))
        zf.writestr(name, b"x")
    _raises(rf"unsafe member '{name}'", path)


def test_zip_symlink(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("train/cat/link.png")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    _raises(r"'train/cat/link\.png'.*links", path)


def test_several_datasets_in_one_folder(image_folder, tmp_path):
    image_folder(tmp_path / "outer" / "a")
    image_folder(tmp_path / "outer" / "b")
    _raises(r"several datasets \(a, b\)", tmp_path / "outer")


def test_empty_class_folder_added_after_caching(image_folder):
    root, _ = image_folder()
    load_dataset(root)
    (root / "train" / "empty").mkdir()
    (root / "test" / "empty").mkdir()
    _raises(r"train/empty has no images", root)


def test_sibling_folder_with_a_longer_name_is_not_mixed_in(image_folder, tmp_path):
    image_folder(tmp_path / "pack" / "mini")
    (tmp_path / "pack" / "mini2" / "extra").mkdir(parents=True)
    (tmp_path / "pack" / "mini2" / "extra" / "0.png").write_bytes(encode(random_images(1)[0]))
    ds = load_dataset(pack(tmp_path / "pack", tmp_path / "p.tar", arcname=""))
    assert ds.classes == ["airplane", "cat", "dog"] and len(ds.train) == 9
