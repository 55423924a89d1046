"""Face backbones: shapes, parameter counts, gradients, configuration errors, seeded init."""

from __future__ import annotations

import pytest
import torch

from fedfr.errors import ConfigError
from fedfr.face.models import count_parameters, get_model, list_models, resolve_model_name

ALL_NAMES = [
    "sphereface20", "sphereface36", "sphereface64",
    "iresnet18", "iresnet34", "iresnet50", "iresnet100",
    "mobilefacenet", "small_cnn",
]


#: parameter counts at 112x112, 512-d: (low, high). iresnet: insightface's r50 / r100 within 2%.
PARAM_RANGES = {
    "iresnet50": (43.6e6 * 0.98, 43.6e6 * 1.02),
    "iresnet100": (65.2e6 * 0.98, 65.2e6 * 1.02),
    "mobilefacenet": (1.0e6, 1.25e6),
    "small_cnn": (7_587_488, 7_587_488),  # the 256*7*7 -> 512 linear dominates at 112
}


def test_list_models_is_the_documented_set():
    assert sorted(list_models()) == sorted(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_shape_attributes_and_size_at_112(name):
    torch.manual_seed(0)
    model = get_model(name, embedding_size=512, input_size=112).eval()
    assert model.input_size == 112 and model.embedding_size == 512
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 512) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # Features are not L2-normalised.
    assert not torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-3)
    if name in PARAM_RANGES:
        low, high = PARAM_RANGES[name]
        assert low <= count_parameters(model) <= high


@pytest.mark.parametrize("name", ["small_cnn", "mobilefacenet", "iresnet18", "sphereface20"])
@pytest.mark.parametrize("size", [32, 48, 64])
def test_small_input_sizes(name, size):
    model = get_model(name, embedding_size=64, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 64)


@pytest.mark.parametrize("alias,name", [("sphere64", "sphereface64"), ("r50", "iresnet50"),
                                        ("mbf", "mobilefacenet"), ("small", "small_cnn"),
                                        (" Small_CNN", "small_cnn"), ("r100", "iresnet100")])
def test_aliases_resolve_to_canonical_names(alias, name):
    assert resolve_model_name(alias) == name
    assert resolve_model_name(name) == name


def test_alias_builds_the_canonical_architecture():
    kwargs = {"embedding_size": 16, "input_size": 32}
    assert count_parameters(get_model("mbf", **kwargs)) == count_parameters(
        get_model("mobilefacenet", **kwargs))


def test_iresnet_features_bn_scale_is_frozen():
    model = get_model("iresnet18", embedding_size=512, input_size=112)
    assert count_parameters(model) - count_parameters(model, trainable_only=True) == 512


def test_sphereface64_code_variant_parameter_count():
    # FedFR's sphnet.py: units [3,7,16,3], no BN; hand count 49,726,656 (notes: ~49.7M).
    model = get_model("sphereface64", layers=[3, 7, 16, 3], batch_norm=False)
    assert count_parameters(model) == 49_726_656
    assert count_parameters(get_model("sphereface64")) != count_parameters(model)


def test_mobilefacenet_parameter_count_matches_paper_at_128d():
    # Chen et al. 2018 report 0.99M parameters for the 128-d model.
    n = count_parameters(get_model("mobilefacenet", embedding_size=128, input_size=112))
    assert 0.95e6 < n < 1.05e6


def test_small_cnn_hand_counted_tiny_configuration():
    # channels (2,3,4,5), units (0,0,0,1), 16x16 input (1x1 final map), 8-d, ReLU.
    convs = 9 * (3 * 2 + 2 * 3 + 3 * 4 + 4 * 5 + 5 * 5)  # stage convs + one residual conv
    bns = 2 * (2 + 3 + 4 + 5 + 5)
    linear = 5 * 1 * 1 * 8  # bias-free
    bn1d = 2 * 8
    model = get_model("small_cnn", embedding_size=8, input_size=16, channels=(2, 3, 4, 5),
                      units=(0, 0, 0, 1))
    assert count_parameters(model) == convs + bns + linear + bn1d == 715


def test_small_cnn_default_size_and_linear_layer():
    model = get_model("small_cnn", embedding_size=512, input_size=32)
    assert model.fc.weight.shape == (512, 256 * 2 * 2)
    assert count_parameters(model) == 1_689_248 < 2_500_000


def test_gradients_flow_through_small_cnn():
    torch.manual_seed(0)
    model = get_model("small_cnn", embedding_size=16, input_size=32)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    model(x).pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_small_cnn_one_sgd_step_changes_output():
    torch.manual_seed(0)
    model = get_model("small_cnn", embedding_size=8, input_size=32)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    target = torch.randn(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_unknown_name_raises_config_error_listing_names():
    with pytest.raises(ConfigError) as err:
        get_model("resnet9000")
    with pytest.raises(ConfigError):
        resolve_model_name("r101")
    message = str(err.value)
    assert "resnet9000" in message
    for name in ALL_NAMES:
        assert name in message


@pytest.mark.parametrize("name", ["small_cnn", "sphereface20", "iresnet18", "mobilefacenet"])
@pytest.mark.parametrize("size", [100, 8, 0, 33])
def test_bad_input_size_raises_config_error(name, size):
    with pytest.raises(ConfigError, match="multiple of 16"):
        get_model(name, input_size=size)


def test_bad_embedding_size_and_options_raise_config_error():
    with pytest.raises(ConfigError, match="embedding_size"):
        get_model("small_cnn", embedding_size=0, input_size=32)
    with pytest.raises(ConfigError, match="unsupported option"):
        get_model("small_cnn", input_size=32, layers=[1, 1, 1, 1])
    with pytest.raises(ConfigError, match="layers"):
        get_model("sphereface20", input_size=32, layers=[1, 1, 1])
    with pytest.raises(ConfigError, match="activation"):
        get_model("small_cnn", input_size=32, activation="gelu")


def test_wrong_input_shape_raises_value_error_naming_expected_shape():
    model = get_model("small_cnn", embedding_size=8, input_size=32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 64, 64))


@pytest.mark.parametrize("name", ["small_cnn", "mobilefacenet", "iresnet18", "sphereface20"])
def test_init_is_deterministic_under_manual_seed(name):
    def state(seed):
        torch.manual_seed(seed)
        return get_model(name, embedding_size=32, input_size=32).state_dict()

    a, b, c = state(3), state(3), state(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
