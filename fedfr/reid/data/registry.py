"""The re-ID dataset registry: name -> reader.

A reader is a callable ``reader(root: Path, **opts) -> ReidSplit``. The built-in readers register
themselves when their module is imported; :func:`get_dataset` and :func:`list_datasets` import
them on first use, so ``import fedfr.reid.data.registry`` stays cheap. ``ReaderRegistry`` is the
mechanism, shared with the video registry (``fedfr.reid.data.video.registry``).

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


class ReaderRegistry:
    """Readers by name for one kind of dataset; ``modules`` (imported on first lookup) register
    the built-in ones with :meth:`register`."""

    def __init__(self, kind: str, modules: tuple[str, ...]) -> None:
        self.kind, self.modules = kind, modules
        self.readers: dict[str, Callable[..., Any]] = {}
        self.loaded = False

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a reader under ``name``; a taken name raises ConfigError."""

        def deco(reader: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.readers:
                raise ConfigError(f"{self.kind} name {name!r} is already registered "
                                  f"(by {self.readers[name].__module__})")
            self.readers[name] = reader
            return reader

        return deco

    def load(self) -> None:
        if not self.loaded:
            self.loaded = True
            for mod in self.modules:
                importlib.import_module(mod)

    def names(self) -> list[str]:
        self.load()
        return sorted(self.readers)

    def reader(self, name: str) -> Callable[..., Any]:
        """The reader of ``name``; an unknown name lists the known ones."""
        self.load()
        if name not in self.readers:
            raise ConfigError(f"unknown re-ID {self.kind} {name!r}; known: "
                              f"{', '.join(sorted(self.readers))}")
        return self.readers[name]


_REGISTRY = ReaderRegistry("dataset", tuple(f"fedfr.reid.data.{m}" for m in (
    "market1501", "dukemtmcreid", "cuhk03", "msmt17", "viper", "grid", "ilids", "prid",
    "prid450s", "synthetic")))


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader`` under ``name``; a taken name raises ConfigError."""
    return _REGISTRY.register(name)


def check_options(name: str, reader: Callable[..., Any], opts: dict[str, Any],
                  extra: tuple[str, ...] = ()) -> None:
    """A ConfigError naming the first option in ``opts`` that ``reader`` does not accept."""
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    for key in opts:
        if key not in accepted:
            raise ConfigError(f"dataset {name!r}: unknown option {key!r}; "
                              f"accepted: {', '.join(accepted + list(extra))}")


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return _REGISTRY.names()


def registered_reader(name: str) -> Callable[..., Any] | None:
    """The reader registered under ``name`` (built-in ones loaded first), or None."""
    _REGISTRY.load()
    return _REGISTRY.readers.get(name)


def get_dataset(name: str, root: str | Path, **opts: Any) -> ReidSplit:
    """Read dataset ``name`` under ``root``; an unknown name lists the known ones.

    ``root`` is the folder that holds the dataset's own folder (torchreid's convention, e.g.
    ``root/market1501/Market-1501-v15.09.15``); each reader also accepts the dataset folder itself.
    """
    reader = _REGISTRY.reader(name)
    verify = bool(opts.pop("verify_images", False))
    check_options(name, reader, opts, extra=("verify_images",))
    split = reader(Path(root).expanduser(), **opts)
    if verify:
        verify_images([*split.train, *split.query, *split.gallery])
    return split
