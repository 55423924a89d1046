"""The shared public-feature cache changes no result: same features, hard negatives and models."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pytest
import torch

from benchmarks.plain_loop import run_plain
from fedfr import feature_cache
from fedfr.config import resolve
from fedfr.face.training.batches import seeded_generator
from fedfr.face.training.local import LocalData, train_local_round
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace
from fedfr.hard_negatives import select_hard_negatives
from server.inprocess import run_inprocess


@pytest.fixture
def setup(tiny_config: dict):
    cfg = resolve({**tiny_config, "num-clients": 3})
    ws = open_workspace(cfg)
    backbone, phi, _ = load_or_pretrain(cfg, ws)
    feature_cache.clear_memory()
    yield cfg, ws, backbone, phi
    feature_cache.clear_memory()


def _perturbed(backbone: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in backbone.items()}
    name = next(k for k, v in out.items() if v.is_floating_point() and v.numel() > 1)
    out[name].view(-1)[0] += 1e-6
    return out


def test_cached_features_and_hard_negatives_equal_the_uncached_path(setup, tmp_path: Path):
    cfg, ws, backbone, _ = setup
    public, _ = ws.public()
    reference = feature_cache.compute_public_features(cfg, backbone, public)
    for mode in ("process", "shared"):
        feature_cache.clear_memory()
        first = feature_cache.shared_public_features(cfg, backbone, public, 1, mode=mode)
        again = feature_cache.shared_public_features(cfg, backbone, public, 1, mode=mode)
        assert feature_cache.stats["computed"] == 1 and feature_cache.stats["memory"] == 1
        assert torch.equal(first, reference) and again is first
    # another process of the same machine: empty memory, the file is read instead
    feature_cache.clear_memory()
    from_file = feature_cache.shared_public_features(cfg, backbone, public, 1, mode="shared")
    assert feature_cache.stats == {"computed": 0, "memory": 0, "file": 1}
    assert torch.equal(from_file, reference)
    for pid in range(cfg.num_clients):
        own = feature_cache.compute_public_features(cfg, backbone, ws.client(pid).train_images)
        assert torch.equal(select_hard_negatives(from_file, own, cfg.hn_threshold),
                           select_hard_negatives(reference, own, cfg.hn_threshold))


def test_a_different_model_round_or_data_is_never_served_from_the_cache(setup):
    cfg, ws, backbone, _ = setup
    public, _ = ws.public()
    base = feature_cache.shared_public_features(cfg, backbone, public, 1, mode="shared")
    other = _perturbed(backbone)
    changed = feature_cache.shared_public_features(cfg, other, public, 1, mode="shared")
    assert torch.equal(changed, feature_cache.compute_public_features(cfg, other, public))
    assert not torch.equal(changed, base)
    feature_cache.shared_public_features(cfg, backbone, public, 2, mode="process")
    feature_cache.shared_public_features(cfg, backbone, public, 2, data_key="x", mode="process")
    # (earlier tests may have left round-1 files: a file read is a miss of the memory too)
    assert feature_cache.stats["computed"] + feature_cache.stats["file"] == 4
    assert feature_cache.stats["memory"] == 0
    assert feature_cache.model_digest(other) != feature_cache.model_digest(backbone)


def test_local_round_with_cached_features_is_bitwise_the_uncached_round(setup):
    cfg, ws, backbone, phi = setup
    public, labels = ws.public()
    data = ws.client(0)
    local = LocalData(data.train_images, data.train_labels, data.num_classes)
    from fedfr.face.models import model_from_config

    def make():
        return model_from_config(cfg)
    runs = []
    for feats in (None, feature_cache.shared_public_features(cfg, backbone, public, 1)):
        runs.append(train_local_round(make, backbone, phi, local, cfg, None,
                                      seeded_generator(cfg.seed, 1, 0), public_images=public,
                                      public_labels=labels, public_features=feats))
    a, b = runs
    assert a.num_hard_negatives == b.num_hard_negatives and a.num_steps == b.num_steps
    assert all(torch.equal(a.backbone[k], b.backbone[k]) for k in a.backbone)
    assert torch.equal(a.phi, b.phi) and a.losses == b.losses


def test_optimised_federation_equals_the_original_path_and_the_plain_loop(
        tiny_config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Bit for bit: the original path (a freshly initialised model per use, D_g embedded by every
    client, Flower's array codec) and the default path (model copies, shared features, zero-copy
    arrays) end with the same global model
    and metrics; so does the overhead benchmark's plain loop."""
    import fedfr.workloads.face
    from fedfr.face.models import model_from_config

    conf = {**tiny_config, "num-server-rounds": 1}
    models, finals = [], []
    for name in ("original", "default"):
        with monkeypatch.context() as m:
            if name == "original":
                m.setenv("FEDFR_FEATURE_CACHE", "off")
                m.setenv("FEDFR_FAST_ARRAYS", "0")  # Flower's np.save / np.load per tensor
                m.setattr(fedfr.workloads.face, "model_factory",
                          lambda cfg: partial(model_from_config, cfg))
            feature_cache.clear_memory()
            out = tmp_path / name
            report = run_inprocess({**conf, "output-dir": str(out)})
        models.append(torch.load(out / "final_model.pt", weights_only=True))
        finals.append(report["final"]["personalized_by_model"])
    plain = run_plain({**conf, "output-dir": str(tmp_path / "plain")}, tmp_path / "plain")
    models.append(torch.load(tmp_path / "plain" / "final_model.pt", weights_only=True))
    for m in models[1:]:
        assert sorted(m) == sorted(models[0])
        assert all(torch.equal(m[k], models[0][k]) for k in m)

    def strip(d):  # the federation also reports how many clients it averaged
        return {m: {k: v for k, v in x.items() if k != "num_clients"} for m, x in d.items()}
    same = json.dumps(strip(finals[0]), sort_keys=True)
    assert json.dumps(strip(finals[1]), sort_keys=True) == same
    assert json.dumps(strip(plain["final"]), sort_keys=True) == same


def test_model_copies_train_exactly_like_fresh_models(setup):
    cfg, ws, backbone, phi = setup
    from fedfr.face.models import model_from_config
    from fedfr.face.models.template import model_factory

    public, labels = ws.public()
    data = ws.client(1)
    local = LocalData(data.train_images, data.train_labels, data.num_classes)
    runs = [train_local_round(make, backbone, phi, local, cfg, None,
                              seeded_generator(cfg.seed, 1, 1), public_images=public,
                              public_labels=labels)
            for make in (partial(model_from_config, cfg), model_factory(cfg))]
    # a second round uses the previous local model as well (three builds per round)
    runs += [train_local_round(make, runs[0].backbone, runs[0].phi, local, cfg, runs[0].state,
                               seeded_generator(cfg.seed, 2, 1), public_images=public,
                               public_labels=labels)
             for make in (partial(model_from_config, cfg), model_factory(cfg))]
    for a, b in (runs[:2], runs[2:]):
        assert all(torch.equal(a.backbone[k], b.backbone[k]) for k in a.backbone)
        assert torch.equal(a.phi, b.phi) and a.losses == b.losses
    first, second = model_factory(cfg)(), model_factory(cfg)()
    assert first is not second and first.fc.weight.data_ptr() != second.fc.weight.data_ptr()


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FEDFR_FEATURE_CACHE", "sometimes")
    with pytest.raises(ValueError, match="FEDFR_FEATURE_CACHE"):
        feature_cache.cache_mode()
    assert os.environ["FEDFR_FEATURE_CACHE"] == "sometimes"
