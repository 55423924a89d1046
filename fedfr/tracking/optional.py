"""Lazy imports of the tracking module's optional packages, with a one-line error."""

from __future__ import annotations

import importlib
from types import ModuleType

from fedfr.errors import ConfigError


def optional_import(module: str, purpose: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ConfigError: '<purpose> need(s) the package ...: run
    `make install` (extra <extra>)'."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"{purpose} need the package '{module}': run `make install` (extra {extra})"
        ) from exc
