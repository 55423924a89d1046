"""Physical filter removal: equals the masked original, keeps residual groups consistent,
exact per-group resource impact, save/load round trip, clear errors for unsupported layers."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from fedfr.face.models import get_model
from fedfr.pruning.counting import UnsupportedLayerError, count_resources
from fedfr.pruning.groups import PrunableNet
from fedfr.pruning.impact import group_savings
from fedfr.pruning.io import load_pruned, save_pruned
from fedfr.pruning.zoo import resnet_cifar


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=7), (3, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=7),
                     (3, 32, 32)),
    "face_small_cnn_prelu": (lambda: get_model("small_cnn", 64, 32, activation="prelu"),
                             (3, 32, 32)),
    "resnet_cifar": (lambda: resnet_cifar((2, 2), (8, 16), 5), (3, 16, 16)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pruned_module_equals_masked_original(name):
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    _randomise_bn(model)
    model.eval()
    x = torch.randn(3, *shape)
    masked = copy.deepcopy(model)
    net, mnet = PrunableNet(model, x[:1]), PrunableNet(masked, x[:1])
    gen = torch.Generator().manual_seed(1)
    groups = net.groups()
    assert groups
    for g in groups:
        idx = torch.randperm(g.size, generator=gen)[:max(1, g.size // 3)].tolist()
        mnet.mask(mnet.groups()[g.index], idx)
        net.remove(g, idx)
    assert type(model) is type(masked)
    with torch.no_grad():
        out, ref = model(x), masked(x)
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()
    assert count_resources(model, x[:1]).params < count_resources(masked, x[:1]).params


def test_residual_groups_stay_consistent():
    model = torchvision.models.resnet18(weights=None)
    x = torch.zeros(1, 3, 32, 32)
    net = PrunableNet(model, x)
    stage = next(g for g in net.groups() if "layer2.0.downsample.0" in g.producers)
    # the projection shortcut, both blocks' second convs and their BNs go together
    assert {"layer2.0.conv2", "layer2.1.conv2"} <= set(stage.producers)
    assert {"layer2.0.downsample.1", "layer2.0.bn2", "layer2.1.bn2"} <= set(stage.bns)
    net.remove(stage, list(range(40)))
    widths = {model.layer2[0].conv2.out_channels, model.layer2[0].downsample[0].out_channels,
              model.layer2[1].conv2.out_channels, model.layer3[0].conv1.in_channels,
              model.layer3[0].downsample[0].in_channels, model.layer2[1].bn2.num_features}
    assert widths == {128 - 40}
    assert model.eval()(x).shape == (1, 1000)
    # the output layer keeps its outputs by default
    assert all("fc" not in g.producers for g in net.groups())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "face_small_cnn_prelu"])
def test_group_resource_impact_equals_removing_one_channel(name):
    build, shape = MODELS[name]
    model = build()
    x = torch.zeros(1, *shape)
    # the closed form is exact for eq5.7 everywhere and for "full" without pooling layers
    conventions = ["eq5.7"] + (["full"] if name != "resnet18" else [])
    net = PrunableNet(model, x)
    for conv in conventions:
        res = count_resources(model, x, conv)
        for g in net.groups()[:6]:
            sav = group_savings(net, g, res)
            probe = copy.deepcopy(model)
            pnet = PrunableNet(probe, x)
            pnet.remove(pnet.groups()[g.index], [0])
            after = count_resources(probe, x, conv)
            assert sum(v[0] for v in sav.values()) == res.flops - after.flops
            assert sum(v[1] for v in sav.values()) == res.params - after.params


def test_save_and_load_pruned_model(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    net = PrunableNet(model, x[:1])
    for g in net.groups():
        net.remove(g, list(range(g.size // 2)))
    path = tmp_path / "pruned.pt"
    save_pruned(path, model, {"kind": "torchvision", "name": "resnet18",
                              "kwargs": {"num_classes": 5}})
    loaded, rec = load_pruned(path)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert rec["channels"]["layer1.0.conv1"] == 32


def test_unsupported_layers_get_a_clear_error():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.rnn = nn.GRU(8, 8)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(UnsupportedLayerError, match=r"'rnn' \(GRU\)"):
        PrunableNet(Seq(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="cannot remove all"):
        net = PrunableNet(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)),
                          torch.zeros(1, 3, 4, 4))
        g = net.groups()[0]
        net.remove(g, range(g.size))
