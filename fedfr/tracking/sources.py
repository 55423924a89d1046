"""Frame sources: MOTChallenge image folders, video files and live URLs (PyAV), and the
per-camera reader threads with bounded queues.

Two modes (``FeedConfig.realtime``):

* synchronous (default): a reader blocks when its queue is full, so every frame is processed
  (evaluation);
* real-time: a full queue drops its *oldest* frame for the new one and counts the drop; file
  sources are paced at their frame rate, as a live camera would deliver them.

A camera whose decoder fails or whose stream ends is logged and marked finished; the others go on.
Images are ``uint8`` arrays ``(H, W, 3)`` in RGB order.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.tracking.motchallenge import SeqInfo, read_seqinfo
from fedfr.tracking.optional import optional_import

log = logging.getLogger(__name__)

URL_SCHEMES = (
    "rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://", "file:",
)


@dataclass
class Frame:
    """One decoded frame of one camera.

    ``index`` is the 1-based frame number in the source (MOTChallenge convention), ``timestamp``
    the wall-clock capture time (``time.time()``, seconds) when the reader got it, ``pts`` the
    media time in seconds where the container gives one.
    """

    camera: str
    index: int
    image: np.ndarray | None
    timestamp: float
    pts: float | None = None


class Source:
    """A camera: ``frames()`` yields its frames in order; ``frame_rate`` in frames per second."""

    camera: str
    frame_rate: float
    live: bool = False

    def frames(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError


class ImageFolderSource(Source):
    """A MOTChallenge sequence folder (``seqinfo.ini`` + ``img1/NNNNNN.jpg``).

    Frames are the image files present, numbered by their file name; ``seqLength`` may be larger
    (MOT17-mini ships 4 of 600 images). ``load_images=False`` yields frames without pixels.
    """

    def __init__(self, seq_dir: str | Path, camera: str | None = None,
                 load_images: bool = True, max_frames: int | None = None):
        self.info: SeqInfo = read_seqinfo(seq_dir)
        self.camera = camera or self.info.name
        self.frame_rate = self.info.frame_rate
        self.load_images = load_images
        self.max_frames = max_frames
        img_dir = self.info.image_dir
        if not img_dir.is_dir():
            raise DataFormatError(f"{img_dir}: image folder named by seqinfo.ini imDir is missing")
        files = []
        for p in img_dir.iterdir():
            if p.suffix.lower() == self.info.im_ext.lower() and p.stem.isdigit():
                files.append((int(p.stem), p))
        if not files:
            raise DataFormatError(f"{img_dir}: no *{self.info.im_ext} frames named by number")
        self.files = sorted(files)

    def frames(self) -> Iterator[Frame]:
        files = self.files if self.max_frames is None else self.files[: self.max_frames]
        for index, path in files:
            image = read_image(path) if self.load_images else None
            yield Frame(self.camera, index, image, time.time(), (index - 1) / self.frame_rate)


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot decode image ({exc})") from exc


def _import_av():
    return optional_import("av", "video sources (PyAV)", "tracking")


class VideoSource(Source):
    """A video file or a live stream URL (RTSP/HTTP/...) decoded by PyAV (FFmpeg).

    ``options`` are FFmpeg demuxer options (e.g. ``{"rtsp_transport": "tcp"}``); ``timeout``
    (seconds) bounds opening and each read, so a dead camera fails instead of hanging. Frame
    numbers count decoded frames from 1. The frame rate is probed when the source is built.
    """

    def __init__(self, url: str | Path, camera: str | None = None,
                 options: dict[str, str] | None = None, max_frames: int | None = None,
                 timeout: float | None = 10.0):
        self.url = str(url)
        self.timeout = timeout
        self.live = self.url.lower().startswith(URL_SCHEMES)
        if not self.live and not Path(self.url).is_file():
            raise DataFormatError(f"{self.url}: no such video file")
        self.camera = camera or Path(self.url).stem
        self.options = dict(options or {})
        self.max_frames = max_frames
        self.frame_rate = 30.0
        av = _import_av()
        try:  # probe the frame rate
            with av.open(self.url, options=self.options, timeout=self.timeout) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                if rate:
                    self.frame_rate = float(rate)
        except (av.error.FFmpegError, IndexError) as exc:
            raise DataFormatError(f"{self.url}: cannot open as video ({exc})") from exc

    def frames(self) -> Iterator[Frame]:
        av = _import_av()
        with av.open(self.url, options=self.options, timeout=self.timeout) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, vf in enumerate(container.decode(stream), 1):
                if self.max_frames is not None and n > self.max_frames:
                    break
                pts = float(vf.pts * stream.time_base) if vf.pts is not None else None
                yield Frame(self.camera, n, vf.to_ndarray(format="rgb24"), time.time(), pts)


def open_source(spec: str | Path, camera: str | None = None, **kwargs) -> Source:
    """A source from a path or URL: a folder with ``seqinfo.ini`` -> ImageFolderSource, a URL
    or a file -> VideoSource."""
    text = str(spec)
    if text.lower().startswith(URL_SCHEMES):
        return VideoSource(text, camera, **kwargs)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path, camera, **kwargs)
    if path.is_file():
        return VideoSource(path, camera, **kwargs)
    raise DataFormatError(f"{text}: not a sequence folder, video file or stream URL")


class FrameQueue:
    """A bounded FIFO of frames. ``drop_oldest``: a put on a full queue discards the oldest frame
    (counted in ``dropped``) instead of blocking. ``close()`` marks the end of the stream."""

    def __init__(self, maxsize: int, drop_oldest: bool):
        if maxsize < 1:
            raise ConfigError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.closed = False
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()

    def put(self, frame: Frame, stop: threading.Event | None = None) -> bool:
        """Add ``frame``; False when ``stop`` was set while blocked (frame not added)."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if self.drop_oldest:
                    self._items.popleft()
                    self.dropped += 1
                    break
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.05)
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None when the queue is closed and empty, or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self.closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.1)
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def finished(self) -> bool:
        with self._cond:
            return self.closed and not self._items


@dataclass
class FeedConfig:
    """Reader settings: ``realtime`` drops oldest frames on a full queue of ``queue_size``;
    ``pace`` (default: on in real-time mode for non-live sources) replays files at their frame
    rate."""

    realtime: bool = False
    queue_size: int = 8
    pace: bool | None = None


@dataclass
class CameraStats:
    """Counters of one camera's reader."""

    read: int = 0
    dropped: int = 0
    error: str | None = None
    ended: bool = False
    depth: int = 0


@dataclass
class _Camera:
    source: Source
    queue: FrameQueue
    thread: threading.Thread | None = None
    read: int = 0
    error: str | None = None
    ended: bool = False


class MultiCameraFeed:
    """One reader thread per source, each filling its own bounded ``FrameQueue``.

    ``ticks()`` yields, per step, one frame from each camera that has one: in synchronous mode it
    waits for every unfinished camera; in real-time mode it takes what is queued (waiting at most
    ``poll_s`` when nothing is). Use as a context manager (stops the readers on exit).
    """

    def __init__(self, sources: Sequence[Source], config: FeedConfig | None = None,
                 poll_s: float = 0.05):
        self.config = config or FeedConfig()
        names = [s.camera for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must be unique, got {names}")
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.cameras = {
            s.camera: _Camera(s, FrameQueue(self.config.queue_size, self.config.realtime))
            for s in sources
        }

    def start(self) -> MultiCameraFeed:
        for name, cam in self.cameras.items():
            cam.thread = threading.Thread(target=self._read, args=(cam,), daemon=True,
                                          name=f"decode-{name}")
            cam.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for cam in self.cameras.values():
            if cam.thread is not None:
                cam.thread.join(timeout=5)

    def __enter__(self) -> MultiCameraFeed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _read(self, cam: _Camera) -> None:
        pace = self.config.pace
        if pace is None:
            pace = self.config.realtime and not cam.source.live
        t0 = time.monotonic()
        try:
            for frame in cam.source.frames():
                if self._stop.is_set():
                    break
                if pace:
                    due = t0 + cam.read / cam.source.frame_rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    frame.timestamp = time.time()
                if not cam.queue.put(frame, self._stop):
                    break
                cam.read += 1
        except Exception as exc:  # noqa: BLE001 - a failing camera must not stop the others
            cam.error = f"{type(exc).__name__}: {exc}"
            log.error("camera %s failed after %d frames: %s", cam.source.camera, cam.read,
                      cam.error)
        else:
            log.info("camera %s ended after %d frames", cam.source.camera, cam.read)
        finally:
            cam.ended = True
            cam.queue.close()

    def ticks(self) -> Iterator[list[Frame]]:
        """Lists of frames (at most one per camera, in camera order) until all cameras end."""
        while True:
            active = [c for c in self.cameras.values() if not c.queue.finished]
            if not active:
                return
            batch: list[Frame] = []
            for cam in active:
                if self.config.realtime:
                    frame = cam.queue.get(timeout=0)
                else:
                    frame = cam.queue.get()
                if frame is not None:
                    batch.append(frame)
            if batch:
                yield batch
            elif self.config.realtime:
                time.sleep(self.poll_s)

    def stats(self) -> dict[str, CameraStats]:
        return {
            name: CameraStats(read=c.read, dropped=c.queue.dropped, error=c.error,
                              ended=c.ended, depth=len(c.queue))
            for name, c in self.cameras.items()
        }
