"""Process-level runtime settings (CPU threads)."""

from __future__ import annotations

import os

import torch


def configure_threads() -> int:
    """Set torch's intra-op threads from ``FEDFR_NUM_THREADS`` (if set); returns the count.

    Several processes that each use every core (a ServerApp and Ray actors on 2 cores, say)
    slow each other down many times over; give each process its share.
    """
    value = os.environ.get("FEDFR_NUM_THREADS")
    if value:
        n = max(1, int(value))
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return torch.get_num_threads()
