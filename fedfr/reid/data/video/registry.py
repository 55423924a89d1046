"""The video re-ID dataset registry: name -> reader, the image registry's mechanism
(``fedfr.reid.data.registry.ReaderRegistry``) for tracklet datasets.

A reader is ``reader(root: Path, **opts) -> VideoSplit``; built-in readers register when their
module is imported, which :func:`get_video_dataset` and :func:`list_video_datasets` do on first
use. ``verify_frames=True`` (any reader) opens and decodes every listed frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedfr.reid.data.files import verify_images
from fedfr.reid.data.records import ReidImage, VideoSplit
from fedfr.reid.data.registry import ReaderRegistry, check_options

VideoReader = Callable[..., VideoSplit]

_REGISTRY = ReaderRegistry("video dataset", (
    "fedfr.reid.data.video.mars", "fedfr.reid.data.video.dukev",
    "fedfr.reid.data.video.ilidsvid", "fedfr.reid.data.video.prid2011",
    "fedfr.reid.data.tracklets",
))


def register_video_dataset(name: str) -> Callable[[VideoReader], VideoReader]:
    """Decorator registering a video reader under ``name``; a taken name raises ConfigError."""
    return _REGISTRY.register(name)


def list_video_datasets() -> list[str]:
    """Registered video dataset names, sorted."""
    return _REGISTRY.names()


def get_video_dataset(name: str, root: str | Path, **opts: Any) -> VideoSplit:
    """Read video dataset ``name`` under ``root`` (the folder holding the dataset's own folder,
    torchreid's convention; the dataset folder itself is accepted too)."""
    reader = _REGISTRY.reader(name)
    verify = bool(opts.pop("verify_frames", False))
    check_options(name, reader, opts, extra=("verify_frames",))
    split = reader(Path(root).expanduser(), **opts)
    if verify:
        tracks = {id(t): t for t in [*split.train, *split.query, *split.gallery, *split.test]}
        verify_images(ReidImage(p, t.pid, t.camid) for t in tracks.values() for p in t.paths)
    return split
