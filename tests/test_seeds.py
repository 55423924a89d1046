"""--seeds in the experiment commands: parsing, seed folders, tables over seeds with intervals."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.common import (
    SCORES_KEY,
    parse_seeds,
    seed_dirs,
    t_interval,
    write_seed_table,
)
from fedfr.face.evaluation.uncertainty import client_metrics, client_scores, mean_metrics


def test_parse_seeds() -> None:
    assert parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("", "a,b", "1,1"):
        with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
            parse_seeds(bad)


def test_seed_dirs(tmp_path) -> None:
    assert seed_dirs({"a": 1}, tmp_path, None) == [({"a": 1}, tmp_path)]
    assert seed_dirs({"a": 1}, tmp_path, [3, 5]) == [({"a": 1, "seed": 3}, tmp_path / "seed-3"),
                                                      ({"a": 1, "seed": 5}, tmp_path / "seed-5")]


def test_t_interval() -> None:
    mean, sd, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0)
    assert lo == pytest.approx(2.0 - 4.302653 / math.sqrt(3), rel=1e-5)
    assert hi == pytest.approx(2.0 + 4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(t_interval([5.0])[1]) and t_interval([5.0])[0] == 5.0


def _scores(rng: np.random.Generator, shift: float):
    d, k, per = 8, 4, 4
    centres = rng.normal(size=(k, d))
    test = np.repeat(centres, per, 0) + (1.0 - shift) * rng.normal(size=(k * per, d))
    other = rng.normal(size=(24, d))
    n = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    y = np.repeat(np.arange(k), per)
    return client_scores(n(test), y, n(test), y, n(other), np.arange(24) // 2)


def test_write_seed_table_reports_mean_sd_and_bootstrap_interval(tmp_path) -> None:
    rng = np.random.default_rng(0)
    per_seed = []
    for seed in range(3):
        rows = []
        for name, shift in (("base", 0.0), ("better", 0.5)):
            scores = [_scores(rng, shift) for _ in range(2)]
            met = mean_metrics([client_metrics(s, (1e-1,), (1e-1,)) for s in scores])
            rows.append(([name], {"personalized": met, SCORES_KEY: scores,
                                  "seconds": float(seed)}))
        per_seed.append(rows)
    write_seed_table(tmp_path, "t", per_seed, ["row"], sections=("personalized",),
                     extra=[("seconds", "seconds")], num_samples=100, reference="base")
    frame = pd.read_csv(tmp_path / "t.csv")
    col = "P 1:1 TAR@1E-01"
    assert {col, f"{col} sd", f"{col} lo", f"{col} hi"} <= set(frame.columns)
    vals = [100 * r[i][1]["personalized"]["tar@1e-01"] for r in per_seed for i in (0,)]
    assert frame[col][0] == pytest.approx(np.mean(vals))
    assert frame[f"{col} sd"][0] == pytest.approx(np.std(vals, ddof=1))
    assert (frame[f"{col} lo"] <= frame[col]).all() and (frame[col] <= frame[f"{col} hi"]).all()
    assert frame["seconds"][0] == pytest.approx(1.0)
    md = (tmp_path / "t.md").read_text()
    assert "±" in md and "Paired differences to 'base'" in md
    assert (tmp_path / "t_diff.md").exists()


def test_write_seed_table_refuses_rows_that_differ(tmp_path) -> None:
    a = [(["x"], {"generic": {"rank1": 0.5}})]
    b = [(["y"], {"generic": {"rank1": 0.5}})]
    with pytest.raises(ValueError, match="different rows"):
        write_seed_table(tmp_path, "t", [a, b], ["row"], sections=("generic",))
