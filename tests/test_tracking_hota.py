"""HOTA through the optional ``trackeval`` package (fedfr.tracking.hota)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fedfr.errors import ConfigError
from fedfr.tracking.hota import evaluate_hota, evaluate_hota_multicamera

HAVE_TRACKEVAL = importlib.util.find_spec("trackeval") is not None


def _gt(ids, frames=10, x=0.0):
    """One pedestrian per frame at a fixed box; ``ids`` gives its id per frame."""
    return np.array([[f, ids[f - 1], x, 0, 10, 20, 1, 1, 1.0] for f in range(1, frames + 1)])


@pytest.mark.skipif(HAVE_TRACKEVAL, reason="trackeval is installed")
def test_without_trackeval_one_line_error_naming_it():
    with pytest.raises(ConfigError, match="package 'trackeval'"):
        evaluate_hota(_gt([1] * 10), _gt([1] * 10)[:, :6])


@pytest.mark.skipif(HAVE_TRACKEVAL, reason="trackeval is installed")
def test_track_hota_flag_fails_before_the_run(tmp_path, capsys):
    from fedfr.cli import main

    assert main(["track", "--synthetic", "--out", str(tmp_path / "o"), "--hota"]) == 2
    assert "trackeval" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.skipif(not HAVE_TRACKEVAL, reason="trackeval not installed")
def test_hota_of_a_perfect_track_and_of_an_id_switch():
    gt = _gt([1] * 10)
    perfect = evaluate_hota(gt, gt[:, :6])
    assert perfect["hota"] == pytest.approx(1.0) and perfect["assa"] == pytest.approx(1.0)
    # the tracker switches id half way: DetA 1, AssA 0.5 (each id covers half the person)
    res = evaluate_hota(gt, _gt([7] * 5 + [9] * 5)[:, :6])
    assert res["deta"] == pytest.approx(1.0) and res["assa"] == pytest.approx(0.5)
    assert res["hota"] == pytest.approx(np.sqrt(0.5))
    # across two cameras one global id kept vs a new id in the second camera
    mc_same = evaluate_hota_multicamera({"a": gt, "b": gt}, {"a": gt[:, :6], "b": gt[:, :6]})
    mc_split = evaluate_hota_multicamera({"a": gt, "b": gt},
                                         {"a": gt[:, :6], "b": _gt([2] * 10)[:, :6]})
    assert mc_same["hota"] == pytest.approx(1.0) and mc_split["hota"] == pytest.approx(
        np.sqrt(0.5))
