"""Flower server strategies of fedfr: FedFR (backbone + public class matrix) and FedAvg."""

from __future__ import annotations

from typing import Any

from fedfr.errors import ConfigError
from strategies.fedavg import FedAvgBaseline
from strategies.fedfr import FedFR

#: strategy name (run config ``strategy``) -> class
STRATEGIES: dict[str, type[FedFR]] = {"fedfr": FedFR, "fedavg": FedAvgBaseline}

__all__ = ["STRATEGIES", "FedAvgBaseline", "FedFR", "get_strategy"]


def get_strategy(name: str, **kw: Any) -> FedFR:
    """Build the strategy named ``name`` ("fedfr" | "fedavg") with keyword arguments ``kw``."""
    cls = STRATEGIES.get(name.strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"strategy={name!r}: expected one of {sorted(STRATEGIES)}")
    return cls(**kw)
