"""Golden tests of BYTE: life cycle, the crossing swap of thesis Fig. 8.7, low-score recovery,
re-finding a lost track, the buffer scaled by frame rate."""

import numpy as np
import pytest

from fedfr.tracking.bytetrack import (
    ByteTrackConfig,
    ByteTracker,
    IdAllocator,
    iou_matrix,
    linear_assignment,
)
from fedfr.tracking.detection import Detections


def box(cx, cy, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def dets(boxes, scores):
    return Detections(np.array(boxes, float).reshape(-1, 4), scores, np.ones(len(scores)))


def run(tracker, frames, features=None):
    """frames: list of (boxes, scores) -> list of {track_id: centre x} per frame."""
    out = []
    for k, (b, s) in enumerate(frames):
        f = None if features is None else features[k]
        res = tracker.update(dets(b, s), f)
        out.append({o.track_id: float(o.tlwh[0] + o.tlwh[2] / 2) for o in res})
    return out


def test_linear_assignment_has_a_cost_limit_not_max_cardinality():
    matches, ur, uc = linear_assignment(np.array([[0.1, 0.7], [0.7, 10.0]]), 0.8)
    assert matches == [(0, 0)] and ur == [1] and uc == [1]  # 0.1 + 0.4 + 0.4 < 0.7 + 0.7
    matches, _, _ = linear_assignment(np.array([[0.7, 0.1], [0.1, 0.75]]), 0.8)
    assert sorted(matches) == [(0, 1), (1, 0)]
    assert linear_assignment(np.zeros((0, 3)), 0.5) == ([], [], [0, 1, 2])


def test_iou_matrix():
    m = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(m, [[1.0, 50 / 150, 0.0]])


def test_birth_rules_first_frame_activation_and_confirmation():
    trk = ByteTracker()
    frames = [([box(100, 200)], [0.9])]
    frames += [([box(100 + 2 * k, 200), box(400, 200)] if k == 3 else [box(100 + 2 * k, 200)],
                [0.9, 0.9] if k == 3 else [0.9]) for k in range(1, 6)]
    frames += [([box(112, 200), box(300, 200)], [0.9, 0.9])]  # a new person from frame 7
    frames += [([box(114 + 2 * k, 200), box(300 + 2 * k, 200)], [0.9, 0.9]) for k in range(1, 3)]
    frames += [([box(120, 200), box(306, 200), box(600, 200)], [0.9, 0.9, 0.55])]
    out = run(trk, frames)
    assert list(out[0]) == [1]  # activated on frame 1 itself
    assert all(list(o) == [1] for o in out[1:7])  # the one-frame box at x=400 never shows
    assert set(out[7]) == {1, 3}  # born on frame 7 (id 3; id 2 was the removed one-frame box)
    assert 600 not in [round(x) for x in out[-1].values()]  # 0.55 < new_track_thresh 0.6


def test_per_camera_id_allocators():
    a, b = ByteTracker(), ByteTracker()
    assert list(run(a, [([box(50, 50)], [0.9])])[0]) == [1]
    assert list(run(b, [([box(50, 50)], [0.9])])[0]) == [1]
    shared = IdAllocator()
    c, d = ByteTracker(id_allocator=shared), ByteTracker(id_allocator=shared)
    ids = [list(run(t, [([box(50, 50)], [0.9])])[0])[0] for t in (c, d)]
    assert ids == [1, 2]


def crossing(n=60, speed=4.0, pause=0):
    """Two people on one horizontal line walking towards each other and past (thesis Fig. 8.7).
    With ``pause``, they stand together for that many frames where the front person (B) hides
    the other: only B is detected, and A's detector box comes first in the list afterwards.
    Returns frames (boxes, scores, person index per box) and the true centres (xa, xb)."""
    xa, xb = 100.0, 100.0 + speed * n
    frames, truth = [], []
    for k in range(n + pause):
        standing = n // 2 <= k < n // 2 + pause
        truth.append((xa, xb))
        order = [1] if standing else [0, 1]
        boxes = [box(xa, 200), box(xb, 200)]
        frames.append(([boxes[i] for i in order], [0.9] * len(order), order))
        if not standing:
            xa += speed
            xb -= speed
    return frames, truth


def ids_follow_people(out, truth):
    """The track id on each person at the start stays on that person wherever the two are
    apart (centres 60 px or more)."""
    first = out[1]
    id_a = min(first, key=lambda i: abs(first[i] - truth[1][0]))
    id_b = min(first, key=lambda i: abs(first[i] - truth[1][1]))
    for o, (xa, xb) in zip(out, truth, strict=True):
        if abs(xa - xb) < 60:
            continue
        if id_a not in o or id_b not in o:
            return False
        if abs(o[id_a] - xa) > 15 or abs(o[id_b] - xb) > 15:
            return False
    return True


def test_crossing_at_constant_speed_keeps_ids_with_motion_alone():
    frames, truth = crossing(n=60, speed=4.0)
    out = run(ByteTracker(), [(b, s) for b, s, _ in frames])
    assert ids_follow_people(out, truth)
    assert set().union(*map(set, out)) == {1, 2}


def test_crossing_with_occlusion_fig_8_7_appearance_gate_keeps_ids():
    # they meet, A stands hidden behind B for 20 frames, then both walk on: IoU + motion alone
    # lose A (BYTE drops its lost track as a duplicate of B), the appearance gate re-finds it
    frames, truth = crossing(n=60, speed=4.0, pause=20)
    person = np.array([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0]])
    features = [person[order] + np.random.default_rng(k).normal(0, 0.02, (len(order), 3))
                for k, (_, _, order) in enumerate(frames)]
    plain = run(ByteTracker(), [(b, s) for b, s, _ in frames])
    gated = run(ByteTracker(ByteTrackConfig(appearance_thresh=0.2)),
                [(b, s) for b, s, _ in frames], features)
    assert not ids_follow_people(plain, truth)
    assert len(set().union(*map(set, plain))) > 2  # A came back under a new id
    assert ids_follow_people(gated, truth)
    assert set().union(*map(set, gated)) == {1, 2}


def walker(n, score_at=lambda k: 0.9, present=lambda k: True, speed=3.0):
    return [([box(100 + speed * k, 200)] if present(k) else [],
             [score_at(k)] if present(k) else []) for k in range(n)]


def test_low_score_recovery():
    frames = walker(40, score_at=lambda k: 0.3 if 15 <= k < 25 else 0.9)
    byte = run(ByteTracker(), frames)
    assert all(list(o) == [1] for o in byte)  # followed through the occlusion by stage 2
    no_low = run(ByteTracker(ByteTrackConfig(low_thresh=0.5)), frames)
    assert all(o == {} for o in no_low[15:25])  # without the low boxes: lost there
    assert list(no_low[25]) == [1]  # (and re-found afterwards)


def test_refinding_a_lost_track_keeps_its_id():
    frames = walker(50, present=lambda k: not 10 <= k < 25)
    out = run(ByteTracker(), frames)
    assert all(o == {} for o in out[10:25])
    assert all(list(o) == [1] for o in out[25:])
    assert out[25][1] == pytest.approx(100 + 3.0 * 25, abs=3)


@pytest.mark.parametrize("rate,expected_lost,same_id", [(30, 30, True), (10, 10, False),
                                                         (60, 60, True)])
def test_buffer_scaled_by_frame_rate(rate, expected_lost, same_id):
    cfg = ByteTrackConfig(frame_rate=rate)
    assert cfg.max_time_lost == expected_lost
    frames = walker(50, present=lambda k: not 10 <= k < 25, speed=1.0)  # 15 frames missing
    out = run(ByteTracker(cfg), frames)
    assert (list(out[-1]) == [1]) == same_id


def test_output_filters_area_and_vertical_aspect():
    trk = ByteTracker()
    res = trk.update(dets([box(50, 50, w=200, h=100), box(300, 50, w=2, h=4), box(500, 50)],
                          [0.9, 0.9, 0.9]))
    assert [round(o.tlwh[2]) for o in res] == [40]  # wide box (w/h 2 > 1.6) and 8 px box hidden
