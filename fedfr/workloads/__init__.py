"""Registry of federated workloads (run-config key ``task``): ``face`` (default), ``reid``.

Built-in workloads are imported on first use, so that naming the registry costs nothing and a
face run never imports re-ID code. Others register themselves with ``register_workload``.
"""

from __future__ import annotations

import importlib
import threading

from fedfr.errors import ConfigError

#: task name -> "module:Class" of the built-in workloads (imported lazily)
BUILTIN: dict[str, str] = {
    "face": "fedfr.workloads.face:FaceWorkload",
    "reid": "fedfr.workloads.reid:ReidWorkload",
    "video-reid": "fedfr.workloads.video_reid:VideoReidWorkload",
    "semi-reid": "fedfr.workloads.semi_reid:SemiReidWorkload",
    "unsup-reid": "fedfr.workloads.unsup_reid:UnsupReidWorkload",
}

_REGISTRY: dict[str, object] = {}
_LOCK = threading.Lock()


def register_workload(workload: object, *, replace: bool = False) -> None:
    """Register a ``Workload`` instance under its ``name``; a taken name raises unless
    ``replace``."""
    from fedfr.workloads.base import Workload

    if not isinstance(workload, Workload) or not workload.name:
        raise TypeError(f"register_workload: expected a named Workload instance, got {workload!r}")
    with _LOCK:
        if workload.name in _REGISTRY and not replace and _REGISTRY[workload.name] is not workload:
            raise ValueError(f"workload {workload.name!r} is already registered")
        _REGISTRY[workload.name] = workload


def unregister_workload(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a toy workload)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def workload_names() -> list[str]:
    """Every task name that ``get_workload`` accepts."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def get_workload(name: str):  # -> Workload (not annotated: keeps this module import-light)
    """The workload registered as ``name``; ConfigError naming the valid tasks otherwise."""
    with _LOCK:
        found = _REGISTRY.get(name)
    if found is not None:
        return found
    target = BUILTIN.get(name) if isinstance(name, str) else None
    if target is None:
        raise ConfigError(f"config 'task': expected one of {workload_names()}, got {name!r}")
    module, cls = target.split(":")
    workload = getattr(importlib.import_module(module), cls)()
    with _LOCK:
        return _REGISTRY.setdefault(name, workload)


__all__ = ["BUILTIN", "get_workload", "register_workload", "unregister_workload",
           "workload_names"]
