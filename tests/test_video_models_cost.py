"""FLOPs of the video models: fedfr's counter against seed-reid.md Appendix H and the thesis."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedfr.pruning.counting import Einsum, MatMul, count_resources
from fedfr.reid.models.video import build_video_model
from fedfr.reid.models.video.cost import COST_ROWS, video_model_cost


def _g(name: str, t: int = 8, **kw) -> float:
    return video_model_cost(name, clip_len=t, **kw).flops / 1e9


@pytest.mark.parametrize("row", [r for r in COST_ROWS if r.analytic_g is not None],
                         ids=lambda r: f"{r.table}:{r.label}")
def test_measured_flops_match_appendix_h(row):
    measured = _g(row.model, row.clip_len, **row.kwargs)
    assert measured == pytest.approx(row.analytic_g, rel=0.01)


@pytest.mark.parametrize("backbone", ["resnet50", "small_reid"])
def test_cost_ordering_of_table_2_1_holds(backbone):
    att = {n: _g(n, backbone=backbone) for n in ("nvan", "nvan_spatial", "nvan_temporal",
                                                 "ste_nvan", "cf_aan")}
    assert min(att, key=att.get) == "ste_nvan", att
    assert max(att, key=att.get) == "nvan", att
    assert att["ste_nvan"] < _g("baseline", backbone=backbone) < att["nvan_spatial"]


def test_relative_savings_agree_with_the_thesis():
    nvan = _g("nvan")
    # Table 2.1 / 2.5: STE-NVAN 16.5 / 60.0, +stage 3 40.4 / 60.0, +stage 4 53.6 / 60.0
    for name, reported in (("ste_nvan", 16.5), ("nvan_temporal", 40.4),
                           ("nvan_temporal_stage4", 53.6)):
        assert _g(name) / nvan == pytest.approx(reported / 60.0, abs=0.015)


def test_stripe_count_barely_changes_the_cost():  # Table 2.4: 30.4 G for S = 4, 8, 16
    costs = [_g("nvan_spatial", stripes=s) for s in (4, 8, 16)]
    assert costs == sorted(costs) and costs[-1] / costs[0] < 1.03


def test_matmul_einsum_and_3d_pooling_are_counted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mm, self.es = MatMul(), Einsum("bgci,cij->bgij")
            self.pool = nn.MaxPool3d((2, 1, 1))
            self.gap = nn.AdaptiveAvgPool3d(1)

        def forward(self, x):  # x (B, 4, 6)
            a = self.mm(x, x.transpose(1, 2))  # (B, 4, 4): 16 outputs x 6
            e = self.es(x.reshape(-1, 2, 3, 4), torch.ones(3, 4, 5))  # b g c i j = B*2*3*4*5
            v = self.gap(self.pool(x.reshape(-1, 1, 4, 2, 3)))  # 12 out x 2; then 12 in
            return a.sum() + e.sum() + v.sum()

    x = torch.randn(3, 4, 6)
    eq = count_resources(Net(), x, convention="eq5.7")
    full = count_resources(Net(), x, convention="full")
    assert eq.flops == 16 * 6 + 2 * 3 * 4 * 5
    assert full.flops == eq.flops + 12 * 2 + 12
    with pytest.raises(ValueError, match="two-operand"):
        Einsum("ab,bc,cd->ad")


def test_counts_are_per_clip_whatever_the_batch():
    model = build_video_model("ste_nvan", backbone="small_reid", input_size=(64, 32), stripes=4)
    one = count_resources(model, torch.zeros(1, 4, 3, 64, 32))
    two = count_resources(model, torch.zeros(2, 4, 3, 64, 32))
    assert one.flops == two.flops and one.params == two.params
    eight = count_resources(model, torch.zeros(1, 8, 3, 64, 32))
    assert eight.flops > 1.9 * one.flops  # per clip: twice the frames
