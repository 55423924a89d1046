"""Restricted Random Sampling index rules against hand-worked cases, the clip dataset and the
video P x K sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.reid.data.records import Tracklet
from fedfr.reid.data.rrs import (
    VideoClipDataset,
    rrs_all_clips,
    rrs_chunks,
    rrs_sample,
)
from fedfr.reid.data.sampler import video_pk_sampler


def chunks(f, t, rule="stenvan"):
    return [c.tolist() for c in rrs_chunks(f, t, rule)]


def test_f_not_multiple_of_t():
    # F = 10, T = 4: L = ceil(10/4) = 3, padded with the last frame to 12
    assert chunks(10, 4) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 9, 9]]
    assert rrs_sample(10, 4, "test").tolist() == [0, 3, 6, 9]
    assert rrs_all_clips(10, 4, "sampled").tolist() == [[0, 3, 6, 9], [1, 4, 7, 9],
                                                        [2, 5, 8, 9]]
    assert rrs_all_clips(10, 4, "continuous").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                           [8, 9, 9, 9]]
    # the thesis's "equal duration" reading: no padding, lengths differ by one at most
    assert chunks(10, 4, "even") == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert rrs_sample(10, 4, "test", rule="even").tolist() == [0, 3, 6, 8]
    assert rrs_all_clips(10, 4, "sampled", "even").tolist() == [[0, 3, 6, 8], [1, 4, 7, 9],
                                                                [2, 5, 7, 9]]


def test_f_smaller_than_t():
    for rule in ("stenvan", "cfaan", "even"):
        assert chunks(3, 4, rule) == [[0], [1], [2], [2]]
        assert rrs_sample(3, 4, "test", rule=rule).tolist() == [0, 1, 2, 2]
    assert rrs_sample(1, 3, "train", np.random.default_rng(0)).tolist() == [0, 0, 0]
    assert rrs_all_clips(3, 4).tolist() == [[0, 1, 2, 2]]


def test_exact_multiple_and_rules_agree():
    assert chunks(8, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    for f in range(1, 50):
        for t in range(1, 9):
            assert chunks(f, t, "stenvan") == chunks(f, t, "cfaan"), (f, t)


def test_train_draws_one_frame_per_chunk():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        s = rrs_sample(10, 4, "train", rng)
        assert s[0] in (0, 1, 2) and s[1] in (3, 4, 5) and s[2] in (6, 7, 8) and s[3] == 9
        seen.add(tuple(s))
    assert len(seen) == 27  # every combination of the three 3-frame chunks
    with pytest.raises(ConfigError):
        rrs_chunks(5, 2, "nope")


def _tracklet(tmp_path, n, pid=1):
    from PIL import Image

    paths = []
    for i in range(n):
        arr = np.zeros((8, 4, 3), np.uint8)
        arr[:, 0] = 10 * i  # left column encodes the frame index
        p = tmp_path / f"{pid}_{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return Tracklet(tuple(paths), pid, 0)


def test_clip_dataset_synchronous_flip_and_determinism(tmp_path):
    t = _tracklet(tmp_path, 10)
    ds = VideoClipDataset([t], seq_len=4, mode="train", height=8, width=4, flip=0.5, seed=1)
    flips = []
    for e in range(12):
        ds.set_epoch(e)
        idx, flip = ds.indices(0)
        x, pid, cam = ds[0]
        assert x.shape == (4, 3, 8, 4) and x.dtype == torch.uint8 and pid == 1
        col = x[:, 0, 0, 3] if flip else x[:, 0, 0, 0]  # all frames flipped together
        assert col.tolist() == (10 * idx).tolist()
        assert (x[:, 0, 0, 0 if flip else 3] == 0).all()
        flips.append(flip)
        assert torch.equal(ds[0][0], x)  # same (seed, epoch, index): same item
    assert any(flips) and not all(flips)
    test = VideoClipDataset([t], seq_len=4, mode="all_sampled", height=8, width=4)
    x, _, _ = test[0]
    assert x.shape == (3, 4, 3, 8, 4)
    assert x[:, :, 0, 0, 0].tolist() == (10 * rrs_all_clips(10, 4)).tolist()


def test_video_pk_sampler_thesis_rules():
    tracks = [Tracklet((), pid, 0) for pid in (1, 1, 2, 2, 2, 3, 4, 4, 4, 4)]
    s = video_pk_sampler(tracks, p=2, k=4, seed=0)
    batches = s.batches()
    assert len(batches) == 2  # one epoch = every identity once
    labels = [[tracks[i].pid for i in b] for b in batches]
    assert sorted(lab[j] for lab in labels for j in (0, 4)) == [1, 2, 3, 4]
    assert all(len(set(b[:4])) <= 4 for b in batches)
    # with replacement even for an identity with >= K tracklets (STE-NVAN's np.random.choice)
    reps = [len(set(b[j:j + 4])) < 4 for e in range(20) for b in s.batches(e)
            for j in (0, 4) if tracks[b[j]].pid == 4]
    assert any(reps)
    with pytest.raises(ConfigError, match="replace"):
        video_pk_sampler(tracks, p=2, k=4, epoch="images")
