"""benchmarks/tracking.py on a tiny scene (the table's rows and their sense), and the
``clip_every`` re-ID sampling the benchmark measures."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import tracking as bench
from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.embedders import ColourHistogramEmbedder
from fedfr.tracking.pipeline import TrackingConfig, run_tracking
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import ImageFolderSource

pytest.importorskip("motmetrics")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_scene(SceneSpec(frames=12, width=128, height=96, num_people=4),
                       tmp_path_factory.mktemp("bench") / "scene")


def test_benchmark_rows_for_one_and_three_streams(tiny, tmp_path):
    one = bench.run_case([tiny / "c001"], tmp_path / "a", emb="colour-hist", clip_every=4)
    three = bench.run_case([tiny / c for c in ("c001", "c002", "c003")], tmp_path / "b",
                           emb="colour-hist", clip_every=4)
    assert one["streams"] == 1 and three["streams"] == 3
    assert one["frames"] == 12 and three["frames"] == 36 and three["dropped"] == 0
    for row in (one, three):
        assert row["fps"] > 0 and row["cpu_fps"] > 0 and row["cpu_s"] > 0
        assert 0 <= row["lat_p50_ms"] <= row["lat_p95_ms"]
        assert 0.5 < row["idf1"] <= 1.0
    assert np.isnan(one["mc_idf1"])  # one camera: no multi-camera score
    assert 0 < three["mc_idf1"] <= 1 and 0 < three["mc_idf1_motion"] <= 1
    md = bench.markdown([{"data": "x", "detector": "det.txt", "embedder": "colour-hist",
                          "clip_every": 4, **three}])
    assert md.count("\n") == 3 and "| sync | 3 |" in md


class CountingEmbedder(ColourHistogramEmbedder):
    def __init__(self):
        super().__init__()
        self.crops = 0

    def embed(self, crops):
        self.crops += len(crops)
        return super().embed(crops)


def test_clip_every_embeds_a_quarter_of_the_clips(tiny, tmp_path):
    def run(clip_every):
        src = ImageFolderSource(tiny / "c001")
        emb = CountingEmbedder()
        cfg = TrackingConfig(crop_size=(32, 16), clip_every=clip_every)
        res = run_tracking([src], PrecomputedDetector(src.info.root / "det" / "det.txt"), emb,
                           tmp_path / f"e{clip_every}", cfg)
        rows = np.loadtxt(tmp_path / f"e{clip_every}" / "c001.txt", delimiter=",")
        return emb.crops, rows, res

    every, rows1, _ = run(1)
    sparse, rows4, _ = run(4)
    assert every > 0 and every % 4 == 0 and sparse % 4 == 0
    assert 0.2 * every <= sparse <= 0.45 * every  # one clip in four (the first clip of each)
    np.testing.assert_array_equal(rows1[:, 2:6], rows4[:, 2:6])  # same tracks and boxes
