"""The re-ID dataset registry: name -> reader.

A reader is a callable ``reader(root: Path, **opts) -> ReidSplit``. The built-in readers register
themselves when their module is imported; :func:`get_dataset` and :func:`list_datasets` import
them on first use, so ``import fedfr.reid.data.registry`` stays cheap.

Options every reader accepts through :func:`get_dataset`: ``verify_images`` (bool, default
False) opens and decodes every listed image and fails on the first unreadable one.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedfr.errors import ConfigError
from fedfr.reid.data.files import verify_images
from fedfr.reid.data.records import ReidSplit

Reader = Callable[..., ReidSplit]

_READERS: dict[str, Reader] = {}
_BUILTIN_MODULES = (
    "market1501", "dukemtmcreid", "cuhk03", "msmt17", "viper", "grid", "ilids", "prid",
    "prid450s", "synthetic",
)
_builtins_loaded = False


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader`` under ``name``; a taken name raises ConfigError."""

    def deco(reader: Reader) -> Reader:
        if name in _READERS:
            raise ConfigError(f"dataset name {name!r} is already registered "
                              f"(by {_READERS[name].__module__})")
        _READERS[name] = reader
        return reader

    return deco


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"fedfr.reid.data.{mod}")


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    _load_builtins()
    return sorted(_READERS)


def get_dataset(name: str, root: str | Path, **opts: Any) -> ReidSplit:
    """Read dataset ``name`` under ``root``; an unknown name lists the known ones.

    ``root`` is the folder that holds the dataset's own folder (torchreid's convention, e.g.
    ``root/market1501/Market-1501-v15.09.15``); each reader also accepts the dataset folder itself.
    """
    _load_builtins()
    reader = _READERS.get(name)
    if reader is None:
        raise ConfigError(f"unknown re-ID dataset {name!r}; known: {', '.join(sorted(_READERS))}")
    verify = bool(opts.pop("verify_images", False))
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    for key in opts:
        if key not in accepted:
            raise ConfigError(f"dataset {name!r}: unknown option {key!r}; "
                              f"accepted: {', '.join(accepted + ['verify_images'])}")
    split = reader(Path(root).expanduser(), **opts)
    if verify:
        verify_images([*split.train, *split.query, *split.gallery])
    return split
