"""Video re-ID models (dissertation Ch. 2): NVAN, stripe NL / STE-NVAN, CF-AAN and baselines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.reid.models import build_reid_model
from fedfr.reid.models.video import (
    AxialAttention,
    CoarseToFineAxialBlock,
    NonLocalBlock,
    TemporalMaxPool,
    build_video_model,
    list_video_models,
)

SMALL = {"backbone": "small_reid", "input_size": (64, 32), "stripes": 4}


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised BNs weights, so that attention changes the output."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1


@pytest.mark.parametrize("name", [n for n in list_video_models() if n != "cf_aan"])
def test_every_variant_maps_clips_to_features(name):
    torch.manual_seed(0)
    model = build_video_model(name, **SMALL)
    x = torch.randn(2, 4, 3, 64, 32)
    f, f_bn = model(x)
    assert f.shape == f_bn.shape == (2, 192)
    emb = model.embed(x, normalize=True)
    assert model.training and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_cf_aan_maps_clips_and_rejects_other_clip_lengths():
    model = build_video_model("cf_aan", backbone="small_reid", clip_len=2, scales=2)
    x = torch.randn(1, 2, 3, 128, 64)
    assert model.embed(x).shape == (1, 192)
    with pytest.raises(ValueError, match="clips of 2 frames"):
        model(torch.randn(1, 4, 3, 128, 64))
    with pytest.raises(ConfigError, match="halved"):
        build_video_model("cf_aan", backbone="small_reid", input_size=(72, 36))


def test_unknown_names_and_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown name 'nvam'"):
        build_video_model("nvam")
    with pytest.raises(ConfigError, match="stripes"):
        build_video_model("ste_nvan", backbone="small_reid", input_size=(64, 32), stripes=16)
    with pytest.raises(ConfigError, match="attention_layers"):
        build_video_model("nvan", backbone="small_reid", attention_layers=2)
    with pytest.raises(ValueError, match="expected input"):
        build_video_model("baseline", **SMALL)(torch.randn(2, 3, 64, 32))


def test_resnet50_positions_follow_the_thesis():
    with torch.device("meta"):
        five = build_video_model("nvan")
        three = build_video_model("nvan", attention_layers=3)
        one = build_video_model("nvan", attention_layers=1)
        ste = build_video_model("ste_nvan")
    # conv3_3, conv3_4 = layer2[2], [3]; conv4_4..conv4_6 = layer3[3..5]
    assert list(five.attention) == ["s1b2", "s1b3", "s2b3", "s2b4", "s2b5"]
    assert list(three.attention) == ["s1b3", "s2b4", "s2b5"]
    assert list(one.attention) == ["s2b5"]
    assert ste.temporal_pool_after == (1, 2)
    nl = five.attention["s1b2"][0]
    assert (nl.channels, nl.inter_channels) == (512, 256)
    assert five.attention["s2b5"][0].channels == 1024
    assert ste.attention["s2b3"][0].stripes == 16


def test_attention_can_go_after_any_block():
    with torch.device("meta"):
        model = build_video_model("nvan", positions=[(0, 1), (3, 2), (3, 2)])
    assert list(model.attention) == ["s0b1", "s3b2"] and len(model.attention["s3b2"]) == 2
    assert model.attention["s3b2"][0].channels == 2048
    assert model.config["positions"] == [[0, 1], [3, 2], [3, 2]]
    with pytest.raises(ConfigError, match="no block 6 in stage 2"):
        build_video_model("nvan", backbone="small_reid", positions=[(2, 6)])


def test_trunk_keeps_image_reid_names_so_image_checkpoints_load():
    video = build_video_model("ste_nvan", **SMALL)
    image = build_reid_model("small_reid")
    video.backbone.load_state_dict(image.backbone.state_dict())  # strict
    assert all(k.startswith(("backbone.", "attention.", "neck.")) for k in video.state_dict())


def _reference_nonlocal(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2.1 written out: y_i = sum_j softmax_j(theta_i . phi_j) g_j; z = BN(W_z y) + x."""
    b, c, t, h, w = x.shape
    flat = x.reshape(b, c, -1)  # (b, C, N)

    def conv(m, v):
        return torch.einsum("oc,bcn->bon", m.weight[:, :, 0, 0, 0], v) + m.bias[None, :, None]
    theta, phi, g = conv(block.theta, flat), conv(block.phi, flat), conv(block.g, flat)
    a = torch.softmax(torch.einsum("bci,bcj->bij", theta, phi), dim=-1)
    y = torch.einsum("bij,bcj->bci", a, g)
    z = block.bn(block.w_z(y.reshape(b, -1, t, h, w)))
    return z + x


def test_nonlocal_block_is_identity_when_new_and_follows_eq_2_1():
    torch.manual_seed(1)
    block = NonLocalBlock(16).eval()
    x = torch.randn(2, 16, 3, 4, 2)
    assert torch.equal(block(x), x)  # BN after W_z starts at gamma = beta = 0
    _randomise_bn(block)
    out = block(x)
    assert not torch.allclose(out, x)
    torch.testing.assert_close(out, _reference_nonlocal(block, x), atol=1e-5, rtol=1e-5)


def test_stripe_block_attends_over_pooled_stripes_and_broadcasts_back():
    torch.manual_seed(2)
    block = NonLocalBlock(8, stripes=4).eval()
    _randomise_bn(block)
    x = torch.randn(1, 8, 3, 8, 2)
    z = block(x) - x
    # constant over each stripe's 2 rows x 2 columns
    zs = z.reshape(1, 8, 3, 4, 2, 2)
    assert torch.allclose(zs, zs[..., :1, :1].expand_as(zs), atol=1e-6)
    # = the full block on the stripe means (a 4 x 1 map per frame)
    pooled = x.reshape(1, 8, 3, 4, 2, 2).mean(dim=(4, 5)).unsqueeze(-1)
    full = NonLocalBlock(8).eval()
    full.load_state_dict(block.state_dict())
    torch.testing.assert_close(zs[..., 0, 0].unsqueeze(-1), full(pooled) - pooled,
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        block(torch.randn(1, 8, 3, 6, 2))


@pytest.mark.parametrize("group,isolated", [(2, True), (None, False)])
def test_temporal_groups_attend_only_within_pairs(group, isolated):
    torch.manual_seed(3)
    block = NonLocalBlock(8, stripes=2, temporal_group=group).eval()
    _randomise_bn(block)
    x = torch.randn(1, 8, 4, 4, 2)
    y = x.clone()
    y[:, :, 3] += 1.0  # change frame 3 (second pair)
    same = torch.allclose(block(x)[:, :, :2], block(y)[:, :, :2], atol=1e-6)
    assert same is isolated


def test_temporal_max_pool_takes_pairs_and_ste_nvan_quarters_t():
    x = torch.randn(1, 2, 4, 3, 3)
    out = TemporalMaxPool()(x)
    torch.testing.assert_close(out[:, :, 1], torch.maximum(x[:, :, 2], x[:, :, 3]))
    with pytest.raises(ValueError, match="even"):
        TemporalMaxPool()(torch.randn(1, 2, 3, 2, 2))
    model = build_video_model("ste_nvan", **SMALL).eval()
    assert model.feature_maps(torch.randn(1, 8, 3, 64, 32)).shape == (1, 192, 2, 8, 4)
    stage4 = build_video_model("nvan_temporal_stage4", **SMALL).eval()
    assert stage4.feature_maps(torch.randn(1, 8, 3, 64, 32)).shape[2] == 4


@pytest.mark.parametrize("axis,dim", [("h", 3), ("w", 4), ("t", 2)])
def test_axial_attention_mixes_only_along_its_axis(axis, dim):
    torch.manual_seed(4)
    size = {2: 3, 3: 5, 4: 4}
    att = AxialAttention(8, size[dim], axis, heads=2).eval()
    _randomise_bn(att)
    x = torch.randn(1, 8, 3, 5, 4)
    y = x.clone()
    other = [d for d in (2, 3, 4) if d != dim][0]
    y.select(other, 0).add_(1.0)  # change one slice across the attended axis
    changed = (att(x) - att(y)).abs().amax(dim=(0, 1))  # (T, H, W)
    assert changed.select(other - 2, 1).max() < 1e-6 and changed.select(other - 2, 0).max() > 1e-3
    with pytest.raises(ValueError, match="expected"):
        att(torch.randn(1, 4, 3, 5, 4))


def test_cf_aa_block_is_identity_when_new_and_uses_all_scales():
    torch.manual_seed(5)
    block = CoarseToFineAxialBlock(16, (2, 16, 8), scales=4, heads=2).eval()
    x = torch.randn(1, 16, 2, 16, 8)
    assert torch.equal(block(x), x)
    _randomise_bn(block)
    base = block(x)
    for s in range(4):  # perturbing any scale's channels changes the output
        y = x.clone()
        y[:, 4 * s:4 * s + 4] += 1.0
        assert not torch.allclose(block(y), base)


def test_masked_pooling_averages_the_unpadded_cells_only():
    model = build_video_model("baseline", **SMALL).eval()
    maps = torch.randn(1, 192, 2, 8, 4)
    mask = torch.zeros(1, 2, 64, 32)
    mask[:, 0, :, :16] = 1  # frame 0: left half real; frame 1: nothing real -> whole frame
    f = model.pool_features(maps, mask)
    expected = (maps[:, :, 0, :, :2].mean((2, 3)) + maps[:, :, 1].mean((2, 3))) / 2
    torch.testing.assert_close(f, expected)
    torch.testing.assert_close(model.pool_features(maps), maps.mean((2, 3, 4)))


def test_attention_blocks_train():
    torch.manual_seed(6)
    model = build_video_model("ste_nvan", **SMALL)
    f, f_bn = model(torch.randn(2, 4, 3, 64, 32))
    (f.pow(2).sum() + f_bn.sum()).backward()
    nl = model.attention["s0b0"][0]
    assert nl.bn.weight.grad is not None and nl.bn.weight.grad.abs().sum() > 0
