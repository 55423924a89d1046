"""SyntheticFaces: determinism, shapes, identity structure, learnability band, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.face.data import build_source
from fedfr.face.data.synthetic import SyntheticFaces, render


def test_shapes_dtype_and_identity_major_labels():
    src = SyntheticFaces(5, 3, size=24, seed=1)
    assert src.images.shape == (15, 24, 24, 3) and src.images.dtype == np.uint8
    assert src.labels.dtype == np.int64
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert len(src) == 15 and src.num_identities == 5 and len(src.identity_names) == 5
    assert src.load(4).shape == (24, 24, 3)
    np.testing.assert_array_equal(src.load(4), src.images[4])
    batch = src.load_many([4, 0], 24)
    assert batch.shape == (2, 3, 24, 24) and batch.dtype == torch.uint8
    np.testing.assert_array_equal(batch[0].permute(1, 2, 0).numpy(), src.images[4])
    assert src.load_many([1, 2, 3], 12).shape == (3, 3, 12, 12)
    # images are not flat: the rendering produced structure
    assert src.images.std() > 20


def test_deterministic_and_independent_of_dataset_size():
    a = SyntheticFaces(10, 4, size=16, seed=3)
    b = SyntheticFaces(10, 4, size=16, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    big = SyntheticFaces(20, 4, size=16, seed=3)
    np.testing.assert_array_equal(big.images[:40], a.images)
    # image k of identity j does not depend on images_per_identity either
    more = SyntheticFaces(10, 6, size=16, seed=3)
    np.testing.assert_array_equal(more.images.reshape(10, 6, 16, 16, 3)[:, :4],
                                  a.images.reshape(10, 4, 16, 16, 3))
    # nor on how the rendering is chunked
    np.testing.assert_array_equal(render(3, range(10), 4, 16, max_pixels=1), a.images)
    np.testing.assert_array_equal(render(3, [7, 2], 4, 16),
                                  a.images[[28, 29, 30, 31, 8, 9, 10, 11]])
    other = SyntheticFaces(10, 4, size=16, seed=4)
    assert np.abs(other.images.astype(int) - a.images.astype(int)).mean() > 10
    assert a.digest() == b.digest() != other.digest()
    assert big.digest() != a.digest()


def test_difficulty_zero_has_no_nuisance():
    src = SyntheticFaces(3, 4, size=16, seed=0, difficulty=0.0)
    x = src.images.reshape(3, 4, -1)
    assert (x == x[:, :1]).all()  # every image of an identity is identical
    assert not (x[0, 0] == x[1, 0]).all()


def test_same_identity_more_similar_than_different():
    src = SyntheticFaces(30, 4, size=32, seed=0)
    x = src.images.reshape(120, -1).astype(np.float64)
    sq = (x ** 2).sum(1)
    d = sq[:, None] + sq[None] - 2 * x @ x.T  # squared distances
    same = src.labels[:, None] == src.labels[None]
    off_diag = ~np.eye(120, dtype=bool)
    intra = d[same & off_diag].mean()
    inter = d[~same].mean()
    assert intra < 0.8 * inter  # about 0.6 at difficulty 1


def test_raw_pixel_1nn_is_learnable_but_far_from_trivial():
    ids, per = 100, 4
    src = SyntheticFaces(ids, per, size=32, seed=0)
    x = src.images.reshape(ids, per, -1).astype(np.float32)
    gallery = x[:, 0]  # one image per identity
    probes = x[:, 1:].reshape(-1, x.shape[-1])
    truth = np.repeat(np.arange(ids), per - 1)
    d = (probes ** 2).sum(1)[:, None] - 2 * probes @ gallery.T + (gallery ** 2).sum(1)[None]
    acc = float((d.argmin(1) == truth).mean())
    chance = 1.0 / ids
    assert chance * 5 < acc < 0.9, acc


def test_cache_round_trip(tmp_path):
    first = SyntheticFaces(4, 2, size=16, seed=5, cache_dir=tmp_path)
    files = list(tmp_path.glob("synthetic-*.npz"))
    assert [f.name for f in files] == [f"synthetic-{first.digest()}.npz"]
    assert not list(tmp_path.glob("*.tmp"))
    # a second instance reads the file: change the cached pixels and see them come back
    with np.load(files[0]) as z:
        arrays = dict(z)
    arrays["images"] = 255 - arrays["images"]
    with open(files[0], "wb") as fh:
        np.savez(fh, **arrays)
    second = SyntheticFaces(4, 2, size=16, seed=5, cache_dir=tmp_path)
    np.testing.assert_array_equal(second.images, 255 - first.images)
    # other parameters get another file
    SyntheticFaces(4, 2, size=16, seed=6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("synthetic-*.npz"))) == 2


def test_corrupt_cache_is_rerendered(tmp_path):
    src = SyntheticFaces(2, 2, size=16, seed=0, cache_dir=tmp_path)
    src.cache_path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="re-rendering"):
        again = SyntheticFaces(2, 2, size=16, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.images, src.images)


@pytest.mark.parametrize("kw", [{"num_identities": 0}, {"images_per_identity": -1},
                                {"size": 2}, {"difficulty": -1.0}, {"seed": -3},
                                {"num_identities": 2.5}])
def test_bad_arguments(kw):
    args = {"num_identities": 2, "images_per_identity": 2, "size": 16, **kw}
    with pytest.raises(ConfigError, match=next(iter(kw))):
        SyntheticFaces(**args)


def test_build_source_synthetic():
    src = build_source("synthetic", num_identities=2, images_per_identity=2, size=16)
    assert isinstance(src, SyntheticFaces) and len(src) == 4
    assert src.describe()["kind"] == "synthetic"
    with pytest.raises(ConfigError, match="no data root"):
        build_source("synthetic", root="/tmp", num_identities=2, images_per_identity=2)
    with pytest.raises(ConfigError, match="unknown kind"):
        build_source("lfw", root="/tmp")
    with pytest.raises(ConfigError, match="data root is required"):
        build_source("folder")
