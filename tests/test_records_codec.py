"""The zero-copy array codec of ``strategies.records`` against Flower's own."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from flwr.app import Array

from strategies.records import array_from_numpy, numpy_view, pack_arrays, unpack_arrays

CASES = [np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
         np.arange(5, dtype=np.int64), np.ones((), np.float32), np.zeros((0, 3), np.float32),
         np.random.default_rng(1).standard_normal((7, 2, 3)), np.array([True, False])]


@pytest.mark.parametrize("arr", CASES, ids=lambda a: f"{a.dtype}{a.shape}")
def test_packed_bytes_equal_flowers_and_views_equal_its_numpy(arr: np.ndarray) -> None:
    ours, flowers = array_from_numpy(arr), Array(arr)
    assert ours.data == flowers.data  # byte for byte the .npy image np.save writes
    assert (ours.dtype, ours.shape, ours.stype) == (flowers.dtype, flowers.shape, flowers.stype)
    view = numpy_view(flowers)
    assert view.shape == arr.shape and view.dtype == arr.dtype
    assert np.array_equal(view, flowers.numpy()) and not view.flags.writeable


def test_fortran_order_and_version_2_headers_are_read() -> None:
    import io
    f = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    assert np.array_equal(numpy_view(Array(f)), f)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, f, version=(2, 0))
    arr = Array(dtype="float64", shape=(3, 4), stype="numpy.ndarray", data=buf.getvalue())
    assert np.array_equal(numpy_view(arr), f)


def test_pack_unpack_round_trip_matches_the_flower_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = {"w": torch.randn(4, 3), "b": torch.randn(4), "n": torch.tensor(7)}
    phi = torch.randn(5, 3)
    fast = pack_arrays(backbone, phi)
    monkeypatch.setenv("FEDFR_FAST_ARRAYS", "0")
    slow = pack_arrays(backbone, phi)
    assert list(fast) == list(slow) and all(fast[k].data == slow[k].data for k in fast)
    monkeypatch.delenv("FEDFR_FAST_ARRAYS")
    record = pickle.loads(pickle.dumps(fast, protocol=5))  # as Ray ships it
    got, got_phi = unpack_arrays(record)
    assert all(torch.equal(got[k], backbone[k]) for k in backbone) and torch.equal(got_phi, phi)
    model = torch.nn.Linear(3, 4)
    model.load_state_dict({"weight": got["w"], "bias": got["b"]})  # loading copies
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(got["w"], backbone["w"])  # the message's bytes are untouched


def test_object_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="object"):
        array_from_numpy(np.array([object()], dtype=object))
