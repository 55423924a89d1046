"""``fedfr.tracking.ray_pipeline``: the staged pipeline (camera / re-ID batcher / gallery stages)
gives the threaded pipeline's global identities, in-process and on a local Ray."""

from __future__ import annotations

import numpy as np
import pytest

from fedfr.cli import main
from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.embedders import ColourHistogramEmbedder
from fedfr.tracking.gallery import GalleryConfig
from fedfr.tracking.pipeline import PipelineObserver, TrackingConfig, run_tracking
from fedfr.tracking.ray_pipeline import LocalExecutor, RayOptions, run_tracking_staged
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import ImageFolderSource

pytest.importorskip("motmetrics")
CAMS = ["c001", "c002", "c003"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # disjoint corridor: people leave one camera and enter the next, so the gallery matches
    spec = SceneSpec(setup="disjoint", frames=30, width=192, height=144, num_people=6,
                     frame_rate=5.0)
    return write_scene(spec, tmp_path_factory.mktemp("ray") / "scene")


def _inputs(scene):
    sources = [ImageFolderSource(scene / c) for c in CAMS]
    det = PrecomputedDetector({c: scene / c / "det" / "det.txt" for c in CAMS})
    gt = {c: scene / c / "gt" / "gt.txt" for c in CAMS}
    cfg = TrackingConfig(gallery=GalleryConfig(threshold=0.5, query_interval=3),
                         exit_after=3, crop_size=(64, 32))
    return sources, det, gt, cfg


def _texts(out):
    return {c: (out / f"{c}.txt").read_text() for c in CAMS} | {"aic": (out / "aic.txt")
                                                                 .read_text()}


def test_staged_pipeline_in_process_equals_the_threaded_one(scene, tmp_path):
    sources, det, _, cfg = _inputs(scene)
    ref = run_tracking(sources, det, ColourHistogramEmbedder(), tmp_path / "thr", cfg)
    sources, det, _, cfg = _inputs(scene)
    ticks = []
    res = run_tracking_staged(sources, det, ColourHistogramEmbedder(), tmp_path / "stg", cfg,
                              executor=LocalExecutor(), on_tick=lambda s, g: ticks.append(s))
    assert ref.matches > 0 and res.matches == ref.matches  # the gallery did link people
    assert _texts(tmp_path / "stg") == _texts(tmp_path / "thr")  # same boxes, same global ids
    assert res.report.frames == ref.report.frames == dict.fromkeys(CAMS, 30)
    assert len(ticks) == 30 and all(len(s) == 3 for s in ticks)
    assert res.nodes == dict.fromkeys(CAMS)  # in-process: no Ray node


def test_staged_evaluation_table_and_early_end(scene, tmp_path):
    """A camera that ends early leaves the others going; the evaluation table is run_tracking's
    (same rows, same scores)."""
    def run(fn, out, **kw):
        sources, det, _, cfg = _inputs(scene)
        sources = [ImageFolderSource(scene / c, max_frames=8 if c == "c002" else 14)
                   for c in CAMS]
        return fn(sources, det, ColourHistogramEmbedder(), out, cfg, **kw)

    gt = {c: scene / c / "gt" / "gt.txt" for c in CAMS}
    ref = run(run_tracking, tmp_path / "thr", ground_truth=gt, global_ground_truth=True)
    res = run(run_tracking_staged, tmp_path / "stg", ground_truth=gt, global_ground_truth=True,
              executor=LocalExecutor())
    assert res.report.frames == ref.report.frames == {"c001": 14, "c002": 8, "c003": 14}
    assert _texts(tmp_path / "stg") == _texts(tmp_path / "thr")
    assert res.spans == ref.spans and len(res.table) == 8  # 2 methods x (3 cameras + multi)
    scores = [repr((r["method"], r["camera"], r["idf1"], r["mota"])) for r in ref.table]
    assert [repr((r["method"], r["camera"], r["idf1"], r["mota"])) for r in res.table] == scores
    assert any("nan" not in x and "multi-camera" in x for x in scores)


def test_backend_flag_rejects_ray_options_without_ray_backend(scene, tmp_path, capsys):
    rc = main(["track", "--scene", str(scene), "--out", str(tmp_path / "o"),
               "--ray-address", "auto"])
    assert rc == 2 and "--ray-address" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_backend_on_a_local_two_cpu_ray_gives_the_threaded_identities(scene, tmp_path):
    ray = pytest.importorskip("ray")
    from fedfr.tracking.ray_pipeline import run_tracking_ray

    sources, det, gt, cfg = _inputs(scene)
    run_tracking(sources, det, ColourHistogramEmbedder(), tmp_path / "thr", cfg)
    sources, det, gt, cfg = _inputs(scene)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    found = []

    def look_up(steps, globs):  # another client finds the gallery actor by its name
        if not found:
            found.append(ray.get_actor("fedfr-gallery", namespace="fedfr-track"))

    try:
        res = run_tracking_ray(sources, det, ColourHistogramEmbedder(), tmp_path / "ray", cfg,
                               options=RayOptions(), on_tick=look_up)
    finally:
        ray.shutdown()
    assert found and len(set(res.nodes.values())) == 1 and None not in res.nodes.values()
    assert _texts(tmp_path / "ray") == _texts(tmp_path / "thr")


class _Recorder(PipelineObserver):
    def __init__(self):
        self.calls = []

    def on_start(self, cameras, frame_rates, stats):
        self.calls.append(("start", tuple(cameras), sorted(stats())))

    def on_frame(self, u):
        self.calls.append(("frame", u.frame.camera, u.frame.index, u.frame.image is not None,
                           [(t.track_id, tuple(np.round(t.tlwh, 3))) for t in u.tracks],
                           sorted(u.global_ids.items())))

    def on_match(self, ev):
        self.calls.append(("match", repr(ev)))

    def on_end(self, error=None):
        self.calls.append(("end", error))


def test_staged_pipeline_honours_clip_every_and_publishes_to_observers(scene, tmp_path):
    """clip_every 4 and the web view's observer hook: the staged runner writes the files of
    run_tracking with the same clip schedule, and its observers see the same calls."""
    def run(fn, out, **kw):
        sources, det, _, cfg = _inputs(scene)
        cfg.clip_every = 4
        rec = _Recorder()
        res = fn(sources, det, ColourHistogramEmbedder(), out, cfg, observers=[rec], **kw)
        return res, rec.calls

    ref, ref_calls = run(run_tracking, tmp_path / "thr")
    res, calls = run(run_tracking_staged, tmp_path / "stg", executor=LocalExecutor())
    assert _texts(tmp_path / "stg") == _texts(tmp_path / "thr")
    assert res.matches == ref.matches
    assert calls == ref_calls
    assert sum(c[0] == "frame" and c[3] for c in calls) == 90  # every frame, with its image
    assert calls[0] == ("start", tuple(CAMS), CAMS) and calls[-1] == ("end", None)
