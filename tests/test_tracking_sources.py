import threading
import time

import numpy as np
import pytest

from fedfr.errors import DataFormatError
from fedfr.tracking.sources import (
    FeedConfig,
    Frame,
    FrameQueue,
    ImageFolderSource,
    MultiCameraFeed,
    Source,
    VideoSource,
    open_source,
)
from tests.tracking_fixtures import MOT17_MINI, write_sequence, write_video


def test_image_folder_reads_seqinfo_and_frames_in_order(tmp_path):
    seq = write_sequence(tmp_path, frames=3, frame_rate=10, seq_length=50)
    src = open_source(seq)
    assert isinstance(src, ImageFolderSource)
    assert src.camera == "SEQ-01" and src.frame_rate == 10 and src.info.seq_length == 50
    frames = list(src.frames())
    assert [f.index for f in frames] == [1, 2, 3]
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert abs(int(frames[2].image[..., 0].mean()) - 30) <= 2
    assert frames[1].pts == pytest.approx(0.1)
    assert frames[0].timestamp <= frames[2].timestamp


def test_real_mot17_mini_folder():
    src = ImageFolderSource(MOT17_MINI / "MOT17-02-FRCNN", max_frames=1)
    (frame,) = list(src.frames())
    assert src.info.seq_length == 600 and len(src.files) == 4
    assert frame.image.shape == (1080, 1920, 3)


def test_missing_seqinfo_is_a_one_line_error(tmp_path):
    (tmp_path / "img1").mkdir()
    with pytest.raises(DataFormatError, match="seqinfo.ini"):
        ImageFolderSource(tmp_path)
    with pytest.raises(DataFormatError, match="not a sequence folder"):
        open_source(tmp_path / "nothing")


def test_video_file_and_local_url_through_pyav(tmp_path):
    path = write_video(tmp_path / "cam.mp4", frames=12, rate=25)
    src = open_source(path, camera="c1")
    assert isinstance(src, VideoSource) and not src.live
    assert src.frame_rate == pytest.approx(25)
    frames = list(src.frames())
    assert [f.index for f in frames] == list(range(1, 13))
    means = [f.image.mean() for f in frames]
    assert means[-1] > means[0] + 50  # decoded content, in order
    assert frames[4].pts == pytest.approx(4 / 25)
    # a URL goes through the same decoder path (file:// stands in for rtsp:// here)
    url = VideoSource(f"file:{path}", camera="url")
    assert len(list(url.frames())) == 12


def test_queue_drop_oldest_counts_drops():
    q = FrameQueue(2, drop_oldest=True)
    for k in range(1, 6):
        q.put(Frame("c", k, None, 0.0))
    assert q.dropped == 3 and [q.get(0).index, q.get(0).index] == [4, 5]
    q.close()
    assert q.get() is None and q.finished


def test_blocking_queue_never_drops():
    q = FrameQueue(1, drop_oldest=False)
    got = []

    def consume():
        while (f := q.get()) is not None:
            got.append(f.index)
            time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for k in range(1, 21):
        q.put(Frame("c", k, None, 0.0))
    q.close()
    t.join(5)
    assert got == list(range(1, 21)) and q.dropped == 0


class _ListSource(Source):
    def __init__(self, camera, n, fail_at=None, rate=1000.0):
        self.camera, self.n, self.fail_at, self.frame_rate = camera, n, fail_at, rate

    def frames(self):
        for k in range(1, self.n + 1):
            if k == self.fail_at:
                raise OSError("stream lost")
            yield Frame(self.camera, k, None, time.time())


def test_synchronous_feed_delivers_every_frame_and_survives_a_failing_camera(caplog):
    sources = [_ListSource("a", 30), _ListSource("b", 30, fail_at=11)]
    with MultiCameraFeed(sources, FeedConfig(realtime=False, queue_size=2)) as feed:
        seen = {"a": [], "b": []}
        for batch in feed.ticks():
            for f in batch:
                seen[f.camera].append(f.index)
    assert seen["a"] == list(range(1, 31))
    assert seen["b"] == list(range(1, 11))
    stats = feed.stats()
    assert stats["a"].dropped == 0 and stats["a"].error is None and stats["a"].ended
    assert "stream lost" in stats["b"].error
    assert any("camera b failed" in r.message for r in caplog.records)


def test_realtime_feed_drops_oldest_when_consumer_is_slow():
    sources = [_ListSource("a", 200, rate=2000.0)]
    seen = []
    with MultiCameraFeed(sources, FeedConfig(realtime=True, queue_size=2)) as feed:
        for batch in feed.ticks():
            seen.extend(f.index for f in batch)
            time.sleep(0.01)  # a slow detector
    stats = feed.stats()["a"]
    assert stats.read == 200 and stats.dropped > 0
    assert len(seen) + stats.dropped == 200
    assert seen == sorted(seen) and seen[-1] == 200  # the newest frames survive


def test_unreadable_video_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(DataFormatError, match="broken.mp4: cannot open as video"):
        VideoSource(bad)
    with pytest.raises(DataFormatError, match="no such video file"):
        VideoSource(tmp_path / "missing.mp4")
