"""Re-ID models: registry, last stride, BNNeck, classifier, local weights, counts."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import resnet18

from benchmarks import reid_models
from fedfr.errors import ConfigError, DataFormatError
from fedfr.pruning.counting import count_resources
from fedfr.reid.models import (
    IdentityClassifier,
    build_reid_model,
    list_reid_models,
    resolve_reid_model_name,
)


def test_registry_names_and_aliases():
    assert list_reid_models() == ["resnet18", "resnet34", "resnet50", "small_reid"]
    assert resolve_reid_model_name("R50") == "resnet50"
    assert resolve_reid_model_name("small") == "small_reid"
    with pytest.raises(ConfigError, match="unknown name 'vgg16'"):
        build_reid_model("vgg16")


@pytest.mark.parametrize("name,dim", [("small_reid", 192), ("resnet18", 512),
                                      ("resnet34", 512)])
def test_forward_shapes_and_last_stride(name, dim):
    torch.manual_seed(0)
    m = build_reid_model(name)
    x = torch.randn(2, 3, 64, 32)
    f, f_bn = m(x)
    assert f.shape == f_bn.shape == (2, dim) and m.feature_dim == dim
    map1 = m.backbone(x)
    map2 = build_reid_model(name, last_stride=2).backbone(x)
    assert map1.shape[-2:] == (2 * map2.shape[-2], 2 * map2.shape[-1])


def test_resnet50_last_stride_map_and_counts_at_256x128():
    m = build_reid_model("resnet50")
    x = torch.zeros(1, 3, 256, 128)
    assert m.backbone(x).shape == (1, 2048, 16, 8)
    res = count_resources(m, x, convention="eq5.7")
    # seed-reid Appendix H: 4.053 GMAC per 256x128 frame with last stride 1
    assert res.flops == pytest.approx(4.053e9, rel=2e-3)
    trunk_params = sum(p.numel() for p in m.backbone.parameters())
    assert trunk_params == 23_508_032  # torchvision ResNet-50 without fc
    assert sum(p.numel() for p in m.parameters()) == trunk_params + 2 * 2048  # + BNNeck


def test_small_reid_size_and_flops():
    m = build_reid_model("small_reid")
    res = count_resources(m, torch.zeros(1, 3, 128, 64))
    assert 300_000 <= res.params <= 1_000_000
    assert res.flops < 0.15e9


def test_bnneck_bias_frozen_and_init():
    m = build_reid_model("small_reid")
    bn = m.neck.bn
    assert not bn.bias.requires_grad and torch.all(bn.bias == 0) and torch.all(bn.weight == 1)
    m.train()
    f, f_bn = m(torch.randn(8, 3, 64, 32))
    f_bn.pow(2).sum().backward()
    assert bn.bias.grad is None and bn.weight.grad is not None
    # train-mode BN: f_bn is f standardised per dimension over the batch (weight 1, bias 0)
    ref = (f - f.mean(0)) / torch.sqrt(f.var(0, unbiased=False) + bn.eps)
    assert torch.allclose(f_bn, ref, atol=1e-4)


def test_neck_none_and_embedding_dim():
    m = build_reid_model("small_reid", neck="none", embedding_dim=64)
    f, f_bn = m(torch.randn(3, 3, 64, 32))
    assert f.shape == (3, 64) and torch.equal(f, f_bn)
    with pytest.raises(ConfigError, match="neck"):
        build_reid_model("small_reid", neck="bn")


def test_embed_eval_mode_normalised_and_restores_mode():
    m = build_reid_model("small_reid")
    m.train()
    x = torch.randn(4, 3, 64, 32)
    e = m.embed(x, normalize=True)
    assert m.training
    assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    m.eval()
    with torch.no_grad():
        f, f_bn = m(x)
    assert torch.allclose(m.embed(x), f_bn) and torch.allclose(m.embed(x, feature="before"), f)


def test_identity_classifier_init_and_shape():
    torch.manual_seed(0)
    c = IdentityClassifier(512, 700)
    assert c.fc.bias is None
    assert c.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert abs(c.weight.mean().item()) < 1e-4
    assert c(torch.randn(3, 512)).shape == (3, 700)
    with pytest.raises(ValueError, match=r"\(B, 512\)"):
        c(torch.randn(3, 64))
    assert not any(n.startswith("classifier") for n, _ in
                   build_reid_model("small_reid").named_parameters())


def test_imagenet_weights_from_local_file(tmp_path):
    torch.manual_seed(1)
    ref = resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(ref.state_dict(), path)  # includes fc.weight / fc.bias, which are ignored
    m = build_reid_model("resnet18", pretrained_path=path)
    assert torch.equal(m.backbone.conv1.weight, ref.conv1.weight)
    assert torch.equal(m.backbone.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    x = torch.randn(1, 3, 64, 32)
    ref.eval()
    m.eval()
    # same weights, layer4 stride differs only in the first block: compare layer3 outputs
    stem = torch.nn.Sequential(ref.conv1, ref.bn1, ref.relu, ref.maxpool, ref.layer1,
                               ref.layer2, ref.layer3)
    with torch.no_grad():
        mine = m.backbone.layer3(m.backbone.layer2(m.backbone.layer1(m.backbone.maxpool(
            m.backbone.relu(m.backbone.bn1(m.backbone.conv1(x)))))))
        assert torch.allclose(mine, stem(x))


def test_imagenet_weights_errors_name_file_and_keys(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(DataFormatError, match="nope.pth.*not found"):
        build_reid_model("resnet18", pretrained_path=missing)
    wrong = tmp_path / "r18-for-r34.pth"
    torch.save(resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(DataFormatError, match=r"r18-for-r34.pth.*missing keys \['layer1.2"):
        build_reid_model("resnet34", pretrained_path=wrong)
    state = resnet18(weights=None).state_dict()
    state["layer9.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    with pytest.raises(DataFormatError, match=r"unexpected keys \['layer9.weight'\].*"
                                              r"shape-mismatched keys \['conv1.weight'\]"):
        build_reid_model("resnet18", pretrained_path=odd)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match="junk.pth: cannot read"):
        build_reid_model("resnet18", pretrained_path=junk)


def test_channels_last_same_output():
    torch.manual_seed(0)
    m = build_reid_model("resnet18").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        ref = m(x)[1]
        m.use_channels_last(True)
        assert m.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        out = m(x)[1]
    assert torch.allclose(ref, out, atol=1e-4)


def test_reid_models_benchmark_smoke(tmp_path):
    reid_models.main(["--out", str(tmp_path), "--models", "small_reid", "--batch", "8",
                      "--input", "32x16", "--repeats", "1", "--reps", "1"])
    rows = json.loads((tmp_path / "reid_models.json").read_text())
    assert rows[0]["params"] == 684_544 and rows[0]["infer img/s nchw"] > 0
    assert rows[0]["train CL/NCHW"] > 0
    assert "| small_reid | 684,544 |" in (tmp_path / "reid_models.md").read_text()
