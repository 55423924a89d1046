"""Mini-batch iteration over in-memory uint8 image tensors."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fedfr.face.data.transforms import random_hflip, to_float


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from integers (e.g. seed, round, client) - stable across runs."""
    value = 0
    for p in parts:
        value = (value * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def batch_indices(n: int, batch_size: int, generator: torch.Generator,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Shuffled index batches over range(n); the last short batch is kept unless drop_last.

    A final batch of size 1 is always dropped (BatchNorm cannot train on a single sample).
    """
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if len(idx) < batch_size and (drop_last or len(idx) < 2):
            break
        yield idx


def augment(images_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B,3,S,S) -> float (B,3,S,S) in [-1, 1] with random horizontal flips (the paper's)."""
    return to_float(random_hflip(images_u8, generator))
