"""The synthetic multi-camera scene: layout, determinism, ground truth against the pixels."""

from __future__ import annotations

import configparser
import json

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.tracking.gallery import Topology
from fedfr.tracking.scene import DetectionNoise, SceneSpec, SyntheticScene, write_scene

TINY = dict(num_cameras=3, num_people=5, frames=12, width=200, height=150)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_determinism(tmp_path):
    spec = SceneSpec(seed=3, **TINY)
    a = _files(write_scene(spec, tmp_path / "a"))
    b = _files(write_scene(spec, tmp_path / "b"))
    assert a == b  # same spec, same bytes (images included)
    c = _files(write_scene(SceneSpec(seed=4, **TINY), tmp_path / "c"))
    assert a["c001/gt/gt.txt"] != c["c001/gt/gt.txt"]
    for cam in ("c001", "c002", "c003"):
        ini = configparser.ConfigParser()
        ini.read_string(a[f"{cam}/seqinfo.ini"].decode())
        seq = ini["Sequence"]
        assert (seq["imDir"], seq["seqLength"], seq["imWidth"], seq["imHeight"]) == \
            ("img1", "12", "200", "150")
        assert sum(k.startswith(f"{cam}/img1/") for k in a) == 12
        assert f"{cam}/img1/000001.jpg" in a
        gt = np.loadtxt(tmp_path / "a" / cam / "gt" / "gt.txt", delimiter=",", ndmin=2)
        assert gt.shape[1] == 9 and len(gt) > 0
        assert gt[:, 0].min() >= 1 and gt[:, 0].max() <= 12
        assert set(gt[:, 1].astype(int)) <= set(range(1, 6))  # global person ids
        assert np.all((gt[:, 8] >= 0) & (gt[:, 8] <= 1))
        det = np.loadtxt(tmp_path / "a" / cam / "det" / "det.txt", delimiter=",", ndmin=2)
        assert det.shape[1] == 10 and np.all(det[:, 1] == -1)
        assert np.all((det[:, 6] > 0) & (det[:, 6] <= 1))
    aic = np.loadtxt(tmp_path / "a" / "ground_truth.txt", ndmin=2)
    assert aic.shape[1] == 9 and set(aic[:, 0].astype(int)) <= {1, 2, 3}
    topo = Topology.load(tmp_path / "a" / "topology.json")
    assert set(topo.cameras) == {"c001", "c002", "c003"}
    scene = json.loads(a["scene.json"])
    assert len(scene["cameras"]) == 3 and np.array(scene["cameras"][0]["P"]).shape == (3, 4)
    with pytest.raises(ConfigError, match="not empty"):
        write_scene(spec, tmp_path / "a")


def test_boxes_cover_the_person_pixels():
    scene = SyntheticScene(SceneSpec(seed=1, num_people=8, frames=60, width=320, height=240))
    checked = 0
    for ci in range(3):
        bg = scene.background(ci)
        for f in (10, 30, 50):
            img, truth = scene.render(ci, f)
            changed = np.abs(img.astype(int) - bg.astype(int)).max(axis=2) > 2
            inside = np.zeros_like(changed)
            for (x, y, w, h), v in zip(truth.tlwh, truth.visibility, strict=True):
                x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
                x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
                inside[y0:y1, x0:x1] = True
                if v > 0.5 and w * h > 100:  # a visible person has its pixels in its box
                    assert changed[y0:y1, x0:x1].mean() > 0.15
                    checked += 1
            assert not (changed & ~inside).any()  # no person pixel outside every box
    assert checked > 10


def test_occlusion_lowers_visibility_and_detection_scores():
    scene = SyntheticScene(SceneSpec(seed=0, num_people=14, frames=100, width=320, height=240))
    vis, scores = [], []
    for ci in range(3):
        for f in range(1, 101, 5):
            _, truth = scene.render(ci, f)
            vis.append(truth.visibility)
            dets = scene.detections(ci, f, truth)
            scores.append(dets[:, 4])
    vis = np.concatenate(vis)
    assert (vis < 0.7).sum() > 5 and (vis > 0.99).sum() > 50  # some occlusion, mostly clear
    scores = np.concatenate(scores)
    assert (scores < 0.5).any() and (scores > 0.8).any()  # BYTE's low and high boxes


def test_detection_scores_fall_with_occlusion():
    noise = DetectionNoise(jitter=0, miss_base=0, miss_occluded=0, false_alarms=0, min_visible=0)
    scene = SyntheticScene(SceneSpec(seed=0, num_people=14, frames=100, width=320, height=240,
                                     detection=noise))
    v, s = [], []
    for f in range(1, 101, 6):
        _, truth = scene.render(0, f)
        dets = scene.detections(0, f, truth)
        if len(dets) == len(truth.pids):  # no box lost to clipping: rows align with the truth
            v.append(truth.visibility)
            s.append(dets[:, 4])
    v, s = np.concatenate(v), np.concatenate(s)
    assert len(v) > 40 and v.min() < 0.7
    assert np.corrcoef(v, s)[0, 1] > 0.8


def test_disjoint_topology_links_neighbours_only():
    scene = SyntheticScene(SceneSpec(setup="disjoint", num_people=2, frames=10, width=160,
                                     height=120))
    topo = Topology.from_dict(scene.topology())
    assert set(topo.links) == {("c001", "c002"), ("c002", "c001"), ("c002", "c003"),
                               ("c003", "c002")}
    lk = topo.links[("c001", "c002")]
    assert 0 <= lk.dtmin < lk.dtmax
    spans = [scene._centreline_span(c) for c in scene.cameras]
    assert spans[0][1] < spans[1][0] < spans[1][1] < spans[2][0]  # fields of view do not meet


def test_bad_spec_is_loud():
    with pytest.raises(ConfigError, match="setup"):
        SceneSpec(setup="ring")
