"""Content digests and summaries of re-ID splits."""

from __future__ import annotations

import os
import shutil

import pytest

from fedfr.errors import DataFormatError
from fedfr.reid.data import fixtures as fx
from fedfr.reid.data.digest import split_digest
from fedfr.reid.data.registry import get_dataset
from fedfr.reid.data.summary import split_summary


def _market(root):
    fx.write_market(root, [(1, 1), (1, 2), (3, 4)], [(5, 1)], [(5, 2), (0, 3), (-1, 1)])
    return get_dataset("market1501", root)


def test_digest_changes_when_a_file_is_replaced_under_the_same_name(tmp_path):
    s = _market(tmp_path)
    d0, f0 = split_digest(s), split_digest(s, full=True)
    assert split_digest(get_dataset("market1501", tmp_path)) == d0
    victim = s.gallery[0].path
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes, same mtime
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert split_digest(s) != d0 and split_digest(s, full=True) != f0


def test_portable_and_full_digests_ignore_mtime_local_does_not(tmp_path):
    s = _market(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # same bytes, new mtimes
    for p in (tmp_path / "b").rglob("*.jpg"):
        os.utime(p, ns=(1, 10**18))
    t = get_dataset("market1501", tmp_path / "b")
    assert split_digest(s, full=True) == split_digest(t, full=True)
    assert split_digest(s) == split_digest(t)  # portable: a copy on another node
    assert split_digest(s, mode="local") != split_digest(t, mode="local")


def test_missing_image_is_named(tmp_path):
    s = _market(tmp_path)
    s.query[0].path.unlink()
    with pytest.raises(DataFormatError, match=s.query[0].path.name):
        split_digest(s)


def test_summary_counts_parts_cameras_and_distractors(tmp_path):
    s = split_summary(_market(tmp_path))
    assert s["train"] == {"images": 3, "ids": 2, "distractor-images": 0, "cams": 3,
                          "images-per-cam": {0: 1, 1: 1, 3: 1}}
    assert s["gallery"]["images"] == 2 and s["gallery"]["distractor-images"] == 1
    assert s["gallery"]["ids"] == 1 and s["query-without-cross-camera-match"] == 0
