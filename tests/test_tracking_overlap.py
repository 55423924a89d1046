"""Live matching across cameras with overlapping views (``GalleryConfig(live=True)``)."""

from __future__ import annotations

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.tracking.gallery import CrossCameraGallery, GalleryConfig, MultiCameraMatcher, Topology


def _unit(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a), 0.0])


P, Q, R = _unit(0), _unit(60), _unit(120)  # three people, cosine distance 0.5 apart


def _matcher(topology=None, **kw) -> MultiCameraMatcher:
    cfg = GalleryConfig(**{"threshold": 0.3, "query_interval": 10, "live": True, **kw})
    return MultiCameraMatcher(CrossCameraGallery(cfg, topology), exit_after=30)


def _run(m, frames, feats, views, start=1):
    """``views``: {camera: track ids in view at every frame}; returns the last events."""
    get = lambda c, t: feats.get((c, t))  # noqa: E731
    events = []
    for f in range(start, start + frames):
        for cam, ids in views.items():
            events += m.update(cam, f, f / 10, ids, get)
    return events


def test_people_seen_at_once_by_two_cameras_get_one_identity():
    m = _matcher()
    feats = {("c1", 1): P, ("c1", 2): Q, ("c2", 7): Q + 0.05, ("c2", 8): P + 0.05}
    ev = _run(m, 10, feats, {"c1": [1, 2], "c2": [7, 8]})
    assert len(ev) == 2  # at frame 10, c1's two tracks query c2's identities in view
    g = {k: m.global_id(*k) for k in feats}
    assert g[("c1", 1)] == g[("c2", 8)] and g[("c1", 2)] == g[("c2", 7)]
    assert g[("c1", 1)] != g[("c1", 2)]
    assert g[("c1", 1)] == 1 and g[("c1", 2)] == 2  # the older (smaller) ids are kept
    assert len(m.gallery.events) == 2


def test_off_by_default_the_thesis_links_no_tracks_in_view():
    m = _matcher(live=False)
    feats = {("c1", 1): P, ("c2", 7): P}
    assert _run(m, 20, feats, {"c1": [1], "c2": [7]}) == []
    assert m.global_id("c1", 1) != m.global_id("c2", 7)


def test_never_within_a_camera_and_one_track_per_camera_and_identity():
    m = _matcher()
    # c1 sees two look-alikes; c2 sees one of them: only one c1 track may take its identity
    feats = {("c1", 1): P, ("c1", 2): P + 0.01, ("c2", 7): P + 0.02}
    _run(m, 20, feats, {"c1": [1, 2], "c2": [7]})
    g = {k: m.global_id(*k) for k in feats}
    assert g[("c1", 1)] != g[("c1", 2)]
    assert sum(g[("c2", 7)] == g[k] for k in [("c1", 1), ("c1", 2)]) == 1


def test_three_cameras_form_one_identity_and_strangers_stay_apart():
    m = _matcher()
    feats = {("c1", 1): P, ("c2", 4): P, ("c3", 9): P, ("c3", 10): R, ("c1", 2): Q}
    _run(m, 20, feats, {"c1": [1, 2], "c2": [4], "c3": [9, 10]})
    g = {k: m.global_id(*k) for k in feats}
    assert g[("c1", 1)] == g[("c2", 4)] == g[("c3", 9)]
    assert len({g[("c1", 1)], g[("c1", 2)], g[("c3", 10)]}) == 3  # 0.5 apart > 0.3


def test_topology_gates_live_pairs():
    # disjoint views (transit at least 1 s): a track in view elsewhere cannot be the same person
    topo = Topology.from_dict({"links": [{"from": "c1", "to": "c2", "dtmin": 1.0, "dtmax": 9},
                                         {"from": "c2", "to": "c1", "dtmin": 1.0, "dtmax": 9}]})
    feats = {("c1", 1): P, ("c2", 7): P}
    m = _matcher(topology=topo)
    assert _run(m, 20, feats, {"c1": [1], "c2": [7]}) == []
    topo = Topology.from_dict({"links": [{"from": "c1", "to": "c2", "dtmin": -5, "dtmax": 5}],
                               "symmetric": True})
    m = _matcher(topology=topo)
    assert len(_run(m, 20, feats, {"c1": [1], "c2": [7]})) == 1


def test_live_interval_threshold_and_window():
    feats = {("c1", 1): P, ("c2", 7): _unit(40)}  # distance 0.234
    m = _matcher(live_threshold=0.2)
    assert _run(m, 20, feats, {"c1": [1], "c2": [7]}) == []
    m = _matcher(live_interval=3)
    ev = _run(m, 3, feats, {"c1": [1], "c2": [7]})
    assert len(ev) == 1 and ev[0].time == pytest.approx(0.3)  # frame 3, before frame 10
    m = _matcher(live_window=0.4)  # c2's track was last seen 0.5 s ago: not in view any more
    _run(m, 5, feats, {"c1": [1], "c2": [7]})
    assert _run(m, 5, feats, {"c1": [1], "c2": []}, start=6) == []
    with pytest.raises(ConfigError, match="live_threshold"):
        GalleryConfig(live_threshold=3.0)
    with pytest.raises(ConfigError, match="live_interval"):
        GalleryConfig(live_interval=0)


def test_live_only_without_exit_queries():
    feats = {("c1", 1): P, ("c2", 7): P}
    m = MultiCameraMatcher(
        CrossCameraGallery(GalleryConfig(threshold=0.3, query_interval=10, exits=False)),
        exit_after=2)
    get = lambda c, t: feats.get((c, t))  # noqa: E731
    for f in range(1, 6):
        m.update("c1", f, f / 10, [1], get)
    for f in range(6, 30):  # c1's track exited; c2's would match it, but exits are off
        m.update("c1", f, f / 10, [], get)
        assert m.update("c2", f, f / 10, [7], get) == []
    assert len(m.gallery) == 1 and m.global_id("c2", 7) != m.global_id("c1", 1)


@pytest.mark.slow
def test_live_matching_beats_motion_only_and_the_thesis_on_the_overlapping_scene(tmp_path):
    """The default overlapping scene (docs/tracking.md, Overlapping views): multi-camera IDF1
    of the thesis's gallery 0.292 < motion-only 0.323 < live matching alone 0.721."""
    pytest.importorskip("motmetrics")
    from fedfr.cli import main
    from fedfr.tracking.scene import SceneSpec, write_scene

    scene = write_scene(SceneSpec(), tmp_path / "scene")

    def mc_idf1(name, *flags):
        assert main(["track", "--scene", str(scene), "--out", str(tmp_path / name),
                     *flags]) == 0
        rows = (tmp_path / name / "evaluation.csv").read_text().splitlines()
        got = {tuple(r.split(",")[:2]): float(r.split(",")[8]) for r in rows[1:]}
        return got[("gallery", "multi-camera")], got[("motion-only", "multi-camera")]

    thesis, motion = mc_idf1("thesis")
    live, _ = mc_idf1("live", "--live-matching", "--live-interval", "10", "--no-exit-matching")
    assert thesis == pytest.approx(0.2918, abs=1e-3) and motion == pytest.approx(0.3230, abs=1e-3)
    assert live == pytest.approx(0.7207, abs=1e-3)
