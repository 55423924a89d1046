"""Shared fixtures: a tiny, fast federation config (seconds on 2 CPU cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FEDFR_TEST_THREADS", "1")))

TINY: dict = {
    "image-size": 32, "synthetic-images-per-id": 8, "num-public-ids": 24, "num-clients": 2,
    "ids-per-client": 4, "train-per-id": 4, "test-per-id": 3, "num-generic-ids": 8,
    "embedding-size": 32, "pretrain-epochs": 1, "pretrain-batch-size": 32, "local-epochs": 1,
    "batch-size": 16, "num-server-rounds": 2, "min-train-nodes": 2, "eval-batch-size": 64,
}


@pytest.fixture(autouse=True, scope="session")
def _flower_task_identity() -> None:
    """Messages built directly in tests need a task identity, as in a ServerApp process."""
    from server.inprocess import claim_task_identity

    claim_task_identity()


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache (rendered synthetic images, pre-trained checkpoints) for the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_config(tmp_path: Path, shared_cache: Path) -> dict:
    """Run-config overrides of a 2-client x 2-round federation writing under tmp_path."""
    return {**TINY, "output-dir": str(tmp_path / "out"), "cache-dir": str(shared_cache)}
