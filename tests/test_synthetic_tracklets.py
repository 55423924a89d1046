"""Synthetic tracklets: deterministic, defects with ground truth, served by the MARS reader."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.reid.data.tracklets import render_tracklets, synthetic_tracklets
from fedfr.reid.data.video import get_video_dataset
from fedfr.reid.evaluation.mars import evaluate_mars_split

SMALL = dict(num_ids=8, frames=(4, 8), height=32, width=16, misalign_prob=0.5,
             intruder_prob=0.5, switch_prob=0.5)


def _hash_tree(folder):
    """Every file's bytes, except .mat files (their header holds a creation time): their arrays."""
    import scipy.io as sio

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            if p.suffix == ".mat":
                for k, v in sorted(sio.loadmat(str(p)).items()):
                    if not k.startswith("__"):
                        h.update(k.encode() + np.ascontiguousarray(v).tobytes())
            else:
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracklets")
    return root, synthetic_tracklets("synth-mars", root, clean=True, **SMALL)


def test_deterministic_and_cached(small, tmp_path):
    root, split = small
    a = render_tracklets("synth-mars", tmp_path / "a", **SMALL)
    assert _hash_tree(a) == _hash_tree(split.root)
    again = synthetic_tracklets("synth-mars", root, clean=True, **SMALL)
    assert again.root == split.root and again.meta["digest"] == split.meta["digest"]
    with pytest.raises(ConfigError, match="does not hold"):
        render_tracklets("synth-mars", a, **{**SMALL, "seed": 1})


def test_layout_and_ground_truth(small):
    _, s = small
    assert (s.root / "info" / "tracks_test_info.mat").is_file()
    assert s.train and s.query and s.gallery
    assert {t.pid for t in s.train}.isdisjoint({t.pid for t in s.query})
    assert any(t.orig_pid == -1 for t in s.test) and any(t.orig_pid == 0 for t in s.test)
    tracks = [t for t in s.train + s.test if t.pid > 0]
    assert all(t.truth is not None and len(t.truth) == len(t) for t in tracks)
    switched = [t for t in tracks if t.truth.switch_frames]
    assert switched
    for t in switched:  # the label stays the first person's, a majority of the frames
        k = t.truth.switch_frames[0]
        assert t.truth.true_pid[0] == t.pid and k >= len(t) / 2
    assert any(any(t.truth.intruder_pid) for t in tracks)
    assert any(any(t.truth.misaligned) for t in tracks)
    # a switched test tracklet carries the second person as its cleaned ambiguous identity
    for t in s.test:
        if t.pid > 0 and t.truth.switch_frames:
            assert t.ambi == t.truth.true_pid[-1]
    # each query's (pid, camera) keeps another fragment in the gallery
    for q in s.query:
        assert any(g.pid == q.pid and g.camid == q.camid for g in s.gallery)


def test_defects_change_the_pixels(small):
    from PIL import Image

    _, s = small
    t = next(t for t in s.train + s.test if t.pid > 0 and any(t.truth.misaligned)
             and not all(t.truth.misaligned))
    frames = np.stack([np.asarray(Image.open(p), np.float32) for p in t.paths])
    mis = np.array(t.truth.misaligned)
    clean_mean = frames[~mis].mean(0)
    d_mis = np.abs(frames[mis] - clean_mean).mean()
    d_ok = np.abs(frames[~mis] - clean_mean).mean()
    assert d_mis > d_ok


def test_registered_and_protocols_run(small):
    root, s = small
    v = get_video_dataset("synth-mars", root, num_ids=4, seed=3)
    assert v.name == "synth-mars" and v.root != s.root and v.meta["spec"]["num_ids"] == 4
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(s.test), 4))
    res = evaluate_mars_split(feats, s)
    assert set(res) == {"mars-official", "mars-bot", "mars-cfaan", "mars-clean",
                        "mars-clean-cfaan"}
    assert all(0 <= r.rank.mAP <= 1 for r in res.values() if r.rank.num_valid)


def test_pk_batches_of_rrs_clips(small):
    import torch
    from torch.utils.data import DataLoader

    from fedfr.reid.data.rrs import VideoClipDataset
    from fedfr.reid.data.sampler import video_pk_sampler

    _, s = small
    ds = VideoClipDataset(s.train, seq_len=4, mode="train", height=32, width=16, seed=0)
    sampler = video_pk_sampler(s.train, p=2, k=2, seed=0)
    x, pid, cam = next(iter(DataLoader(ds, batch_size=4, sampler=sampler, drop_last=True)))
    assert x.shape == (4, 4, 3, 32, 16) and x.dtype == torch.uint8
    assert pid[0] == pid[1] and pid[2] == pid[3] and pid[0] != pid[2]
    # the walk changes from frame to frame (stride, wobble, noise)
    assert (x[0, 0].float() - x[0, 1].float()).abs().mean() > 1


def test_synth_dukev_keeps_its_domain_to_the_six_mars_cameras(tmp_path):
    """synth-duke has 8 cameras; the DukeV preset writes the first 6 (MARS names carry c1..c6)."""
    split = synthetic_tracklets("synth-dukev", tmp_path, num_ids=4, height=32, width=16)
    cams = {t.camid for t in [*split.train, *split.query, *split.gallery]}
    assert cams and max(cams) < 6 and len(split.train) > 0
