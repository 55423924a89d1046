"""Cross-camera gallery golden cases: hand-over between cameras, same-camera exclusion, TTL,
topology gating, one-to-one Hungarian, and the running-average clip features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.tracking.gallery import (
    CrossCameraGallery,
    GalleryConfig,
    Link,
    MultiCameraMatcher,
    Query,
    Topology,
)
from fedfr.tracking.track_features import TrackFeatureBank


def unit(*v):
    x = np.asarray(v, np.float64)
    return x / np.linalg.norm(x)


A, B, C = unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)


def test_leaving_cam1_entering_cam2_keeps_the_global_id():
    g = CrossCameraGallery(GalleryConfig(threshold=0.3))
    gid = g.ids.get("c1", 7)
    g.add_exit("c1", 7, A + 0.05 * B, exit_time=10.0, first_time=2.0)
    assert g.ids.get("c2", 3) != gid  # a fresh id until matched
    ev = g.query([Query("c2", 3, A, first_time=12.0)], now=14.0)
    assert len(ev) == 1 and ev[0].global_id == gid
    assert (ev[0].entry_camera, ev[0].entry_track, ev[0].camera, ev[0].track_id) == \
        ("c1", 7, "c2", 3)
    assert g.ids.get("c2", 3) == gid and g.ids.mapping("c2") == {3: gid}
    assert len(g) == 0  # consumed
    assert g.query([Query("c3", 1, A, 15.0)], now=16.0) == []


def test_same_camera_reentry_is_not_matched_through_the_gallery():
    g = CrossCameraGallery(GalleryConfig(threshold=0.5))
    g.add_exit("c1", 1, A, exit_time=5.0)
    assert g.query([Query("c1", 2, A, 6.0)], now=6.0) == []
    assert np.all(g.cost_matrix([Query("c1", 2, A, 6.0)]) >= 1e5)
    assert len(g) == 1  # still there for other cameras
    assert len(g.query([Query("c2", 2, A, 6.0)], now=6.0)) == 1


def test_entries_expire_after_the_ttl():
    g = CrossCameraGallery(GalleryConfig(threshold=0.3, ttl=30.0))
    g.add_exit("c1", 1, A, exit_time=0.0)
    g.add_exit("c1", 2, B, exit_time=20.0)
    assert g.query([Query("c2", 5, A, 31.0)], now=31.0) == []  # A exited 31 s ago: gone
    assert g.expired == 1 and [e.track_id for e in g.entries] == [2]
    assert len(g.query([Query("c2", 6, B, 40.0)], now=40.0)) == 1


def test_topology_forbids_an_impossible_transit(tmp_path):
    path = tmp_path / "topology.json"
    path.write_text(json.dumps({"cameras": ["c1", "c2", "c3"], "symmetric": True,
                                "links": [{"from": "c1", "to": "c2", "dtmin": 5, "dtmax": 20}]}))
    topo = Topology.load(path)
    g = CrossCameraGallery(GalleryConfig(threshold=0.3), topology=topo)
    g.add_exit("c1", 1, A, exit_time=10.0)
    assert g.query([Query("c2", 1, A, first_time=11.0)], now=11.0) == []  # 1 s: too fast
    assert g.query([Query("c3", 1, A, first_time=20.0)], now=20.0) == []  # no c1-c3 link
    assert g.query([Query("c2", 2, A, first_time=40.0)], now=40.0) == []  # 30 s: too slow
    assert len(g.query([Query("c2", 3, A, first_time=18.0)], now=40.0)) == 1  # 8 s: fine
    g.add_exit("c2", 9, B, exit_time=50.0)  # symmetric: c2 -> c1 too
    assert len(g.query([Query("c1", 4, B, first_time=60.0)], now=60.0)) == 1


def test_bad_topology_files_are_loud(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"links": [{"from": "c1"}]}')
    with pytest.raises(DataFormatError, match="t.json: link 0"):
        Topology.load(bad)
    bad.write_text('{"cameras": ["c1"], "links": [{"from": "c1", "to": "c9"}]}')
    with pytest.raises(DataFormatError, match="c9"):
        Topology.load(bad)
    with pytest.raises(ConfigError, match="dtmin"):
        Topology([Link("a", "b", 5, 1)])
    with pytest.raises(ConfigError, match="threshold"):
        GalleryConfig(threshold=3)


def ang(deg):
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0, 0.0])


def test_hungarian_is_one_to_one_and_globally_optimal():
    g = CrossCameraGallery(GalleryConfig(threshold=0.3))
    g.add_exit("c1", 1, ang(0.0), 0.0)  # entry X
    g.add_exit("c1", 2, ang(57.6), 0.0)  # entry Y
    q1, q2 = Query("c2", 1, ang(25.8), 1.0), Query("c3", 1, ang(-28.4), 1.0)
    cost = g.cost_matrix([q1, q2])
    np.testing.assert_allclose(cost, [[0.1, 0.15], [0.12, 0.93]], atol=0.01)
    # both prefer X; greedy (q1 -> X at 0.10) would leave q2 with Y at 0.93 > threshold
    ev = g.query([q1, q2], now=1.0)
    pairs = sorted((e.camera, e.entry_track) for e in ev)
    assert pairs == [("c2", 2), ("c3", 1)]  # one entry per query, minimum total distance
    assert len({e.global_id for e in ev}) == 2 and len(g) == 0


def test_matcher_exit_and_query_interval():
    feats = {("c1", 1): A, ("c2", 4): A, ("c2", 5): C}
    m = MultiCameraMatcher(CrossCameraGallery(GalleryConfig(threshold=0.3, query_interval=40)),
                           exit_after=5)
    get = lambda cam, t: feats.get((cam, t))  # noqa: E731
    for f in range(1, 21):  # person A in c1 for 20 frames
        m.update("c1", f, f / 10, [1], get)
    gid = m.global_id("c1", 1)
    for f in range(21, 81):  # then in c2 (with a stranger C); c1 empty
        m.update("c1", f, f / 10, [], get)
        ev = m.update("c2", f, f / 10, [4, 5], get)
        if f < 40:
            assert ev == []
        if f == 40:  # the first query after A left c1 (frame 26)
            assert [(e.camera, e.track_id) for e in ev] == [("c2", 4)]
    assert m.global_id("c2", 4) == gid and m.global_id("c2", 5) != gid
    assert len(m.gallery.events) == 1


class MeanPixel:
    """A toy clip embedder: the mean colour of each clip (records its calls)."""

    def __init__(self):
        self.calls = []

    def embed_clips(self, clips):
        self.calls.append(clips.shape)
        return clips.reshape(len(clips), -1, 3).mean(axis=1).astype(np.float32)


def test_track_features_four_frame_clips_running_average():
    emb = MeanPixel()
    bank = TrackFeatureBank(emb, clip_len=4, crop_size=(8, 4))
    crop = lambda v: np.full((8, 4, 3), v, np.uint8)  # noqa: E731
    for v in (10, 10, 10, 10, 40, 40, 40):
        bank.add("c1", 1, np.dstack([crop(v)[..., :1], crop(0)[..., :2]]))
        bank.add("c2", 1, crop(5))
    assert bank.feature("c1", 1) is None  # nothing embedded before flush
    assert bank.flush() == 2 and emb.calls == [(2, 4, 8, 4, 3)]  # one batched call, 2 cams
    np.testing.assert_allclose(bank.feature("c1", 1), [1, 0, 0])
    bank.add("c1", 1, np.dstack([crop(40)[..., :1], crop(0)[..., :2]]))
    bank.flush()
    assert bank.tracks[("c1", 1)].clips == 2
    np.testing.assert_allclose(bank.tracks[("c1", 1)].mean, [25, 0, 0])  # (10 + 40) / 2
    assert bank.tracks[("c1", 1)].pending == []


def _handover(use_topology: bool):
    """Ground-truth tracks of the disjoint corridor scene through the clip features (colour
    histograms) and the gallery: (true cross-camera pairs, linked true pairs, false links)."""
    from fedfr.tracking.embedders import ColourHistogramEmbedder
    from fedfr.tracking.scene import SceneSpec, SyntheticScene

    spec = SceneSpec(setup="disjoint", seed=0, num_people=10, frames=100, frame_rate=5.0,
                     width=320, height=240)
    scene = SyntheticScene(spec)
    bank = TrackFeatureBank(ColourHistogramEmbedder(), crop_size=(64, 32))
    topo = Topology.from_dict(scene.topology()) if use_topology else None
    m = MultiCameraMatcher(CrossCameraGallery(GalleryConfig(threshold=0.3, query_interval=20),
                                              topology=topo), exit_after=5)
    keys = set()
    for f in range(1, spec.frames + 1):
        seen = {}
        for ci, cam in enumerate(scene.cameras):
            img, truth = scene.render(ci, f)
            ok = (truth.visibility > 0.3) & (truth.tlwh[:, 3] > 15)
            seen[cam.name] = [int(p) for p in truth.pids[ok]]  # gt id as the local track id
            bank.add_frame(cam.name, img, seen[cam.name], truth.tlwh[ok])
            keys |= {(cam.name, p) for p in seen[cam.name]}
        bank.flush()  # one embedder call for the clips of all cameras
        for cam, ids in seen.items():
            m.update(cam, f, f / spec.frame_rate, ids, bank.feature)
    m.finish(bank.feature)
    gid = {k: m.global_id(*k) for k in keys}
    pairs = [(a, b) for a in keys for b in keys if a < b]
    true = [(a, b) for a, b in pairs if a[1] == b[1]]
    linked = sum(gid[a] == gid[b] for a, b in true)
    false = sum(gid[a] == gid[b] for a, b in pairs if a[1] != b[1])
    return len(true), linked, false


@pytest.mark.slow
def test_scene_handover_through_features_and_gallery():
    n_true, linked, false = _handover(use_topology=True)
    assert n_true == 7 and linked >= 4 and false == 0
