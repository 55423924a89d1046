"""Personalised evaluation of a finished run outside the federation
(fedfr/face/evaluation/personal.py, ``fedfr evaluate personal``)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fedfr.cli import main
from fedfr.config import resolve
from fedfr.dfc import DFCHead
from fedfr.errors import ConfigError
from fedfr.face.evaluation.personal import branch_diagnostics, evaluate_run, load_run
from fedfr.face.evaluation.run import PERSONAL_FARS, PERSONAL_FPIRS


def test_load_run_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="report.json"):
        load_run(tmp_path)


def test_branch_diagnostics_counts_one_vs_all_decisions() -> None:
    cfg = resolve({"embedding-size": 4})
    head = DFCHead(4, 2)  # Omega = e_0, e_1; Pi = identity
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))
    with torch.no_grad():
        backbone(torch.zeros(1, 3, 2, 2))
        backbone[1].weight.zero_()
        backbone[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # every image -> e_0
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    d = branch_diagnostics(cfg, backbone, head, images, torch.tensor([0, 0, 1, 1]))
    # class 0 images: own logit 30*g(1) > 0 (hit); class 1 images: own logit 30*g(0) < 0 (miss)
    assert d["ova_tpr"] == pytest.approx(0.5)
    # negatives: class-0 images vs Omega_1 (cos 0, rejected), class-1 images vs Omega_0 (cos 1)
    assert d["ova_tnr"] == pytest.approx(0.5)
    assert d["omega_rank1"] == pytest.approx(0.5)


@pytest.mark.slow
def test_offline_evaluation_equals_the_federated_one(tiny_config: dict, tmp_path) -> None:
    """Same numbers as the clients' evaluate handler: the personal model is Theta_l followed
    by the Pi_l the client saved, and Fine-tune is seeded as the client seeds it."""
    from server.inprocess import run_inprocess

    report = run_inprocess({**tiny_config, "final-eval-models": "global,local,personal,finetune"})
    run = load_run(tiny_config["output-dir"])
    assert all(s is not None and s.dfc is not None for s in run.states.values())
    ev = evaluate_run(run, ("global", "local", "personal", "finetune"))
    ours = ev.metrics(PERSONAL_FARS, PERSONAL_FPIRS)
    fed = report["final"]["personalized_by_model"]
    for model in ("global", "local", "personal", "finetune"):
        for key, value in fed[model].items():
            if key.startswith(("tar@", "tpir@", "rank")) and not math.isnan(value):
                assert ours[model][key] == pytest.approx(value, abs=1e-6), (model, key)
    # the branch is really applied: Pi_l moved away from the identity and changes the scores
    assert all(d["pi_rel_dev"] > 0 for d in ev.diagnostics)
    assert not all((a.impostor == b.impostor).all()
                   for a, b in zip(ev.scores["local"], ev.scores["personal"], strict=True))

    out = tmp_path / "eval"
    assert main(["evaluate", "personal", "--run", tiny_config["output-dir"], "--out", str(out),
                 "--bootstrap", "20"]) == 0
    table = pd.read_csv(out / "personal.csv")
    assert set(table["model"]) == {"global", "local", "personal"}
    table = table.dropna()  # levels the data size cannot support are nan
    assert len(table) and (table["low"] <= table["estimate"] + 1e-12).all()
    assert (table["estimate"] <= table["high"] + 1e-12).all()
    assert "Paired differences to Theta_g" in (out / "personal.md").read_text()


def test_converter_gains_see_a_shrunk_omega_span() -> None:
    from fedfr.face.evaluation.personal import converter_gains

    head = DFCHead(6, 2)  # Omega = e_0, e_1
    assert converter_gains(head) == pytest.approx({"pi_gain_omega": 1.0,
                                                   "pi_gain_complement": 1.0})
    with torch.no_grad():
        head.pi.weight.copy_(torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0, 1.0, 1.0])))
    g = converter_gains(head)
    assert g["pi_gain_omega"] == pytest.approx(0.5)
    assert g["pi_gain_complement"] == pytest.approx(1.0)
