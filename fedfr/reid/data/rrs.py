"""Restricted Random Sampling (RRS) of video frames (thesis Sec. 2.1, after refs 55 and 73;
seed-reid.md 0.4) and a clip dataset over tracklets.

A tracklet of F frames is split into T chunks {C_t}; training takes one random frame per chunk,
testing the first frame of each chunk; the ordered T frames represent the tracklet.

Chunking rules (``rule=``):

- ``"stenvan"`` (default; the STE-NVAN code): chunk length L = ceil(F / T) (1 when F < T); the
  index list 0..F-1 is padded with the last index F-1 to T * L; chunk t = indices [t L, (t+1) L).
- ``"cfaan"`` (the CF-AAN code): pad 0..F-1 with F-1 up to the next multiple of T, then cut it
  into T equal parts (``np.split``). This gives exactly the STE-NVAN chunks for every (F, T) (the
  next multiple of T is T * ceil(F / T)); both names are kept so that a configuration can say
  whose rule it follows, and a test checks that they agree.
- ``"even"`` (the thesis's words, "T chunks of equal duration", no padding): ``np.array_split``
  of 0..F-1 into T chunks whose lengths differ by at most one; when F < T the chunks are single
  frames with the last frame repeated, as in the other rules.

Test modes: ``"test"`` (first frame of each chunk), ``"all_sampled"`` (CF-AAN's
``test_all_sampled``: clip k takes the k-th frame of every chunk, L clips whose features are
averaged; under ``"even"`` a short chunk repeats its last frame), ``"all_continuous"`` (CF-AAN's
``test_all_continuous``: the padded index list cut into consecutive T-frame clips).
Training flips the whole clip at once ("synchronous" flip, p = 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fedfr.errors import ConfigError
from fedfr.reid.data.dataset import load_image
from fedfr.reid.data.records import Tracklet
from fedfr.reid.data.transforms import pil_to_uint8

RRS_RULES = ("stenvan", "cfaan", "even")
MODES = ("train", "test", "all_sampled", "all_continuous")


def _check(num_frames: int, seq_len: int, rule: str) -> None:
    if rule not in RRS_RULES:
        raise ConfigError(f"RRS rule {rule!r}: expected one of {', '.join(RRS_RULES)}")
    if type(seq_len) is not int or seq_len < 1:
        raise ConfigError(f"RRS: seq_len must be a positive int, got {seq_len!r}")
    if int(num_frames) < 1:
        raise ValueError(f"RRS: a tracklet needs at least one frame, got {num_frames}")


def rrs_chunks(num_frames: int, seq_len: int, rule: str = "stenvan") -> list[np.ndarray]:
    """The ``seq_len`` chunks (int64 arrays of frame indices 0..F-1) of an F-frame tracklet."""
    _check(num_frames, seq_len, rule)
    f, t = int(num_frames), seq_len
    idx = np.arange(f, dtype=np.int64)
    if rule == "stenvan":
        length = math.ceil(f / t)
        strip = np.concatenate([idx, np.full(length * t - f, f - 1, np.int64)])
        return [strip[s * length:(s + 1) * length] for s in range(t)]
    if rule == "cfaan":
        pads = 0 if f % t == 0 else t - f % t
        return list(np.split(np.concatenate([idx, np.full(pads, f - 1, np.int64)]), t))
    if f < t:
        return [np.array([min(s, f - 1)], np.int64) for s in range(t)]
    return [c.astype(np.int64) for c in np.array_split(idx, t)]


def rrs_sample(num_frames: int, seq_len: int, mode: str = "test",
               rng: np.random.Generator | None = None, rule: str = "stenvan") -> np.ndarray:
    """(T,) frame indices: one uniformly random frame per chunk (``mode="train"``, drawn from
    ``rng``) or each chunk's first frame (``mode="test"``)."""
    chunks = rrs_chunks(num_frames, seq_len, rule)
    if mode == "test":
        return np.array([c[0] for c in chunks], np.int64)
    if mode != "train":
        raise ConfigError(f"rrs_sample mode {mode!r}: expected 'train' or 'test'")
    if rng is None:
        raise ValueError("rrs_sample: mode='train' needs an rng")
    return np.array([c[rng.integers(len(c))] for c in chunks], np.int64)


def rrs_all_clips(num_frames: int, seq_len: int, order: str = "sampled",
                  rule: str = "stenvan") -> np.ndarray:
    """(n_clips, T) frame indices covering the whole tracklet: ``order="sampled"`` (clip k = the
    k-th frame of every chunk) or ``"continuous"`` (consecutive T-frame pieces of the padded
    index list)."""
    chunks = rrs_chunks(num_frames, seq_len, rule)
    length = max(len(c) for c in chunks)
    grid = np.stack([np.concatenate([c, np.full(length - len(c), c[-1], np.int64)])
                     for c in chunks])  # (T, L)
    if order == "sampled":
        return grid.T.copy()
    if order == "continuous":
        return grid.reshape(-1, seq_len)  # rows of grid = the (padded) chunks, in order
    raise ConfigError(f"rrs_all_clips order {order!r}: expected 'sampled' or 'continuous'")


def synchronous_flip(clip: torch.Tensor, flip: bool) -> torch.Tensor:
    """(T, C, H, W) -> the same clip with every frame mirrored left-right when ``flip``."""
    return clip.flip(-1) if flip else clip


class VideoClipDataset(Dataset):
    """RRS clips of tracklets: items ``(frames, pid, camid)``.

    ``frames`` is uint8 (T, 3, H, W) in modes ``train`` / ``test`` and (n_clips, T, 3, H, W) in
    ``all_sampled`` / ``all_continuous`` (batch those one tracklet at a time). ``transform``
    (optional) maps the uint8 tensor to the model's input (e.g. ``transforms.eval_batch`` per
    clip). Training draws come from ``(seed, epoch, index)`` only, so an item is reproducible;
    ``set_epoch`` changes them. ``flip``: probability of the synchronous horizontal flip (train).
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int = 8, mode: str = "train", *,
                 rule: str = "stenvan", height: int = 256, width: int = 128, flip: float = 0.5,
                 seed: int = 0, transform: Callable[[torch.Tensor], Any] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"VideoClipDataset mode {mode!r}: expected one of "
                              f"{', '.join(MODES)}")
        _check(1, seq_len, rule)
        self.tracklets = list(tracklets)
        for i, t in enumerate(self.tracklets):
            if not isinstance(t, Tracklet) or len(t) == 0:
                raise TypeError(f"tracklets[{i}]: expected a non-empty Tracklet")
        self.seq_len, self.mode, self.rule = seq_len, mode, rule
        self.height, self.width, self.flip = height, width, float(flip)
        self.seed, self.epoch, self.transform = int(seed), 0, transform

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tracklets)

    def indices(self, index: int) -> tuple[np.ndarray, bool]:
        """The frame indices of item ``index`` ((T,) or (n_clips, T)) and whether it is
        flipped."""
        t = self.tracklets[index]
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index])
            idx = rrs_sample(len(t), self.seq_len, "train", rng, self.rule)
            return idx, bool(rng.random() < self.flip)
        if self.mode == "test":
            return rrs_sample(len(t), self.seq_len, "test", rule=self.rule), False
        order = "sampled" if self.mode == "all_sampled" else "continuous"
        return rrs_all_clips(len(t), self.seq_len, order, self.rule), False

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        t = self.tracklets[index]
        idx, flip = self.indices(index)
        flat = idx.reshape(-1)
        cache: dict[int, torch.Tensor] = {}
        for j in np.unique(flat).tolist():
            cache[j] = pil_to_uint8(load_image(t.paths[j]), self.height, self.width)
        frames = torch.stack([cache[j] for j in flat.tolist()])
        frames = synchronous_flip(frames, flip).reshape(*idx.shape, *frames.shape[1:])
        if self.transform is not None:
            frames = self.transform(frames)
        return frames, t.pid, t.camid

    @property
    def pids(self) -> torch.Tensor:
        """(N,) long: each tracklet's pid."""
        return torch.tensor([t.pid for t in self.tracklets], dtype=torch.long)
