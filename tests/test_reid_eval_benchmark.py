"""benchmarks/reid_eval_scale.py runs end to end on its quick preset and reports its measures."""

from __future__ import annotations

import json

from benchmarks.reid_eval_scale import main


def test_reid_eval_scale_quick(tmp_path):
    assert main(["--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "reid_eval_scale_quick.json").read_text())
    r = report["result"]
    assert r["sizes"]["queries"] == 300 and r["sizes"]["gallery"] == 1500
    for name in ("floor", "features_to_rank", "evaluate_rank_on_distmat", "re_ranking",
                 "reranked_rank"):
        ph = r["phases"][name]
        assert ph["wall_s_median"] > 0 and ph["peak_rss_mb"] > 0
    assert r["phases"]["features_to_rank"]["wall_ratio_to_floor"] > 0
    m = r["metrics"]
    # the two paths (features and a given distance matrix) agree, and the task is not trivial
    assert m["features_to_rank"]["mAP"] == m["evaluate_rank"]["mAP"]
    assert 0.2 < m["features_to_rank"]["mAP"] < 0.99 and m["features_to_rank"]["ap"] == "noninterp"
    assert m["re_ranking"]["invalid"] == 0 and m["reranked_rank"]["mAP"] > 0
    md = (tmp_path / "reid_eval_scale_quick.md").read_text()
    assert "python -m benchmarks.reid_eval_scale" in md and "wall / floor" in md
