"""ImageFolderSource: natural ordering, decoding of PGM/PNG/JPEG, errors, the ORL folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedfr.errors import DataFormatError
from fedfr.face.data import build_source
from fedfr.face.data.folder import ImageFolderSource, natural_key

ORL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "orl"


def _grey(h: int, w: int, value: int) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 7 * 10 + value).astype(np.uint8)


def _smooth(h: int, w: int) -> np.ndarray:
    """A smooth colour ramp (JPEG keeps it close)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([40 + 10 * x, 60 + 12 * y, 150 + 0 * x]).astype(np.uint8)


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """root/{s1, s2, s10, empty} with PGM, PNG (grey, RGB, palette, RGBA) and JPEG files."""
    root = tmp_path / "faces"
    for name in ("s1", "s2", "s10", "empty"):
        (root / name).mkdir(parents=True)
    Image.fromarray(_grey(6, 5, 1)).save(root / "s1" / "10.pgm")
    Image.fromarray(_grey(6, 5, 2)).save(root / "s1" / "2.pgm")
    Image.fromarray(_rgb(4, 3, 0)).save(root / "s1" / "1.png")
    Image.fromarray(_smooth(8, 8)).save(root / "s2" / "a.jpg", quality=95)
    Image.fromarray(_rgb(5, 4, 2)).convert("P").save(root / "s2" / "b.png")
    rgba = np.dstack([_rgb(5, 4, 3), np.full((5, 4), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "s10" / "x.png")
    (root / "s10" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("ignored")
    return root


def test_natural_key_orders_numbers_by_value():
    names = ["s10", "s2", "s1", "S3", "a10b2", "a10b10", "a9"]
    assert sorted(names, key=natural_key) == ["a9", "a10b2", "a10b10", "s1", "s2", "S3", "s10"]


def test_tiny_folder_loads_in_natural_order(tiny: Path):
    with pytest.warns(UserWarning, match="empty.*no images"):
        src = ImageFolderSource(tiny)
    assert src.identity_names == ["s1", "s2", "s10"]
    assert [p.relative_to(tiny).as_posix() for p in src.paths] == [
        "s1/1.png", "s1/2.pgm", "s1/10.pgm", "s2/a.jpg", "s2/b.png", "s10/x.png"]
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert src.labels.dtype == np.int64 and src.num_identities == 3 and len(src) == 6
    # PNG RGB: exact pixels
    np.testing.assert_array_equal(src.load(0), _rgb(4, 3, 0))
    # PGM grey: three equal channels with the grey values
    img = src.load(1)
    assert img.shape == (6, 5, 3) and img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], _grey(6, 5, 2))
    # JPEG: lossy but close; palette and RGBA become RGB
    jpg = src.load(3).astype(int)
    assert jpg.shape == (8, 8, 3) and np.abs(jpg - _smooth(8, 8)).mean() < 6
    assert src.load(4).shape == (5, 4, 3)
    np.testing.assert_array_equal(src.load(5), _rgb(5, 4, 3))
    # load_many resizes images of different sizes
    batch = src.load_many([0, 1, 3], 16)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == torch.uint8
    assert src.describe()["kind"] == "folder" and src.describe()["num_images"] == 6


def test_digest_ignores_location_but_not_content(tiny: Path, tmp_path: Path):
    with pytest.warns(UserWarning):
        a = ImageFolderSource(tiny)
    a.digest()  # the digest reads the files: compute it while they are there
    moved = tmp_path / "moved"
    tiny.rename(moved)
    with pytest.warns(UserWarning):
        b = ImageFolderSource(moved)
    assert a.digest() == b.digest() and len(a.digest()) == 16
    (moved / "s2" / "a.jpg").rename(moved / "s2" / "c.jpg")
    with pytest.warns(UserWarning):
        c = ImageFolderSource(moved)
    assert c.digest() != b.digest()


def test_converted_copies_are_skipped(tmp_path: Path):
    (tmp_path / "p1").mkdir()
    Image.fromarray(_grey(4, 4, 0)).save(tmp_path / "p1" / "1.pgm")
    Image.fromarray(_grey(4, 4, 0)).save(tmp_path / "p1" / "1.pgm.png")
    Image.fromarray(_grey(4, 4, 9)).save(tmp_path / "p1" / "2.pgm")
    with pytest.warns(UserWarning, match="1 files that are format conversions"):
        src = ImageFolderSource(tmp_path)
    assert [p.name for p in src.paths] == ["1.pgm", "2.pgm"]
    assert len(ImageFolderSource(tmp_path, skip_converted=False)) == 3


def test_corrupt_file_names_the_file(tmp_path: Path):
    (tmp_path / "p1").mkdir()
    Image.fromarray(_rgb(4, 4, 0)).save(tmp_path / "p1" / "ok.png")
    bad = tmp_path / "p1" / "x.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    src = ImageFolderSource(tmp_path)
    assert src.load(0).shape == (4, 4, 3)
    with pytest.raises(DataFormatError, match=r"x\.jpg.*cannot decode"):
        src.load(1)
    with pytest.raises(DataFormatError, match=r"x\.jpg"):
        src.load_many([0, 1], 8)


def test_missing_root_and_no_identity_folders(tmp_path: Path):
    with pytest.raises(DataFormatError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope")
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(DataFormatError, match="no identity folders"):
        ImageFolderSource(tmp_path)
    with pytest.raises(DataFormatError, match="is not a folder"):
        ImageFolderSource(tmp_path / "README.md")
    (tmp_path / "s1").mkdir()
    with pytest.warns(UserWarning), pytest.raises(DataFormatError, match="none of the 1"):
        ImageFolderSource(tmp_path)


def test_index_out_of_range(tmp_path: Path):
    (tmp_path / "p").mkdir()
    Image.fromarray(_rgb(4, 4, 0)).save(tmp_path / "p" / "a.png")
    src = ImageFolderSource(tmp_path)
    with pytest.raises(IndexError, match="out of range"):
        src.load(1)


@pytest.mark.skipif(not ORL.is_dir(), reason="ORL faces not present")
@pytest.mark.filterwarnings("ignore:.*format conversions")
def test_orl_folder():
    src = build_source("folder", root=str(ORL))
    assert src.num_identities == 40 and len(src) == 400
    assert src.identity_names[:3] == ["s1", "s2", "s3"] and src.identity_names[9] == "s10"
    assert np.bincount(src.labels).tolist() == [10] * 40
    img = src.load(0)
    assert img.shape == (112, 92, 3) and img.dtype == np.uint8
    assert (img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 0] == img[:, :, 2]).all()
    assert src.paths[0].name == "1.pgm" and src.paths[9].name == "10.pgm"
    assert src.load_many(range(0, 400, 50), 32).shape == (8, 3, 32, 32)
