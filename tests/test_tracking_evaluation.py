import csv

import numpy as np
import pytest

from fedfr.tracking.evaluation import (
    METRICS,
    accumulate,
    evaluate_mot,
    evaluate_multicamera,
    filter_frame,
    summarize,
)
from tests.tracking_fixtures import MOT17_MINI, MOTMETRICS_REF


def test_reproduces_motmetrics_reference_within_1e3():
    seqs = ["TUD-Campus", "TUD-Stadtmitte"]
    df = evaluate_mot({s: (MOTMETRICS_REF / s / "gt.txt", MOTMETRICS_REF / s / "test.txt")
                       for s in seqs})
    with open(MOTMETRICS_REF / "expected_metrics.csv") as fh:
        expected = list(csv.DictReader(fh))
    assert len(expected) == 3
    for row in expected:
        for key in METRICS:
            assert df.loc[row["name"], key] == pytest.approx(float(row[key]), abs=1e-3), (
                row["name"], key)


def test_mot17_filtering_rules():
    # gt: pedestrian (scored), static person (distractor), pedestrian with flag 0, a car
    gt = np.array([[1, 1, 0, 0, 10, 20, 1, 1, 1.0],
                   [1, 2, 100, 0, 10, 20, 1, 7, 1.0],
                   [1, 3, 200, 0, 10, 20, 0, 1, 1.0],
                   [1, 4, 300, 0, 10, 20, 1, 3, 1.0],
                   [1, 5, 400, 0, 10, 20, 1, 1, 0.1]])
    hyp = np.array([[1, 9, 0, 0, 10, 20], [1, 8, 101, 0, 10, 20], [1, 7, 300, 0, 10, 20],
                    [1, 6, 400, 0, 10, 20]], float)
    g, h = filter_frame(gt, hyp, "mot17")
    assert g[:, 1].tolist() == [1, 5]
    assert h[:, 1].tolist() == [9, 7, 6]  # only the box on the static person is removed
    g, h = filter_frame(gt, hyp, "mot17", min_visibility=0.2)
    assert g[:, 1].tolist() == [1] and h[:, 1].tolist() == [9, 7]
    g, h = filter_frame(gt, hyp, "plain")
    assert g[:, 1].tolist() == [1, 2, 4, 5] and len(h) == 4


def test_perfect_result_on_real_mot17_gt_scores_one():
    gt = MOT17_MINI / "MOT17-02-FRCNN/gt/gt.txt"
    from fedfr.tracking.motchallenge import read_ground_truth

    rows = read_ground_truth(gt)
    ped = rows[(rows[:, 6] == 1) & (rows[:, 7] == 1)]
    df = summarize({"s": accumulate(gt, ped[:, :6])})
    assert df.loc["s", "mota"] == pytest.approx(1.0) and df.loc["s", "idf1"] == pytest.approx(1)
    # boxes on distractors/static people are not false positives
    others = rows[np.isin(rows[:, 7], (2, 7, 8, 12))]
    df = summarize({"s": accumulate(gt, np.concatenate([ped, others])[:, :6])})
    assert df.loc["s", "num_false_positives"] == 0


def _cam(ids_frames):
    return np.array([[f, i, 10 * i, 0, 10, 20, 1, 1, 1.0] for i, f in ids_frames], float)


def test_multicamera_idf1_counts_identities_across_cameras():
    g1 = _cam([(1, f) for f in range(1, 11)])
    g2 = _cam([(1, f) for f in range(1, 11)])  # the same person later in camera 2
    same = evaluate_multicamera({"c1": g1, "c2": g2}, {"c1": g1[:, :6], "c2": g2[:, :6]})
    assert same["idf1"] == pytest.approx(1.0)
    h2 = g2[:, :6].copy()
    h2[:, 1] = 5  # camera 2 gave the person a new global id
    split = evaluate_multicamera({"c1": g1, "c2": g2}, {"c1": g1[:, :6], "c2": h2})
    assert split["idf1"] == pytest.approx(0.5)
    assert split["num_switches"] == 1 and split["mota"] == pytest.approx(1 - 1 / 20)
    # per-camera IDF1 would not see it
    df = evaluate_mot({"c2": (g2, h2)})
    assert df.loc["c2", "idf1"] == pytest.approx(1.0)
