"""Re-ID data side (dataset, transforms, P x K sampler) and the training engine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from reid_fixtures import write_identity_images

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.dataset import ReidImageDataset, load_image
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.sampler import PKSampler
from fedfr.reid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ReidTransformConfig,
    ResizeToTensor,
    build_transform,
    random_erasing,
    random_pad_crop,
    train_batch,
)
from fedfr.reid.models import IdentityClassifier, build_reid_model
from fedfr.reid.training import (
    ReidTrainConfig,
    build_optimizer,
    extract_features,
    train_epochs,
    train_reid,
    union_train_set,
)

MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reid" / "market1501-mini"
SMALL = ReidTransformConfig(height=64, width=32)


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------
def test_dataset_loads_records_in_order(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=2, per_id=2)
    ds = ReidImageDataset(recs, ResizeToTensor(32, 16), cache=True)
    x, pid, cam = ds[3]
    assert x.shape == (3, 32, 16) and x.dtype == torch.uint8
    assert (pid, cam) == (2, 1)
    assert ds.pids.tolist() == [1, 1, 2, 2] and ds.camids.tolist() == [0, 1, 0, 1]
    recs[3].path.unlink()
    assert torch.equal(ds[3][0], x)  # served from the cache


def test_dataset_errors_name_the_file(tmp_path):
    bad = tmp_path / "0001_c1s1_000001_00.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    ds = ReidImageDataset([ReidImage(bad, 1, 0), ReidImage(tmp_path / "gone.jpg", 2, 0)])
    with pytest.raises(DataFormatError, match="0001_c1s1_000001_00.jpg: cannot decode"):
        ds[0]
    with pytest.raises(DataFormatError, match="gone.jpg: image file not found"):
        ds[1]


@pytest.mark.skipif(not MINI.exists(), reason="shared market1501-mini not present")
def test_real_market_crops_load_and_extract():
    files = sorted((MINI / "query").glob("*.jpg"))[:6]
    recs = [ReidImage(p, int(p.name[:4]), int(p.name[6]) - 1) for p in files]
    assert load_image(files[0]).size == (64, 128)
    m = build_reid_model("small_reid")
    feats, pids, cams = extract_features(m, recs, build_transform(ReidTransformConfig(128, 64)),
                                         batch_size=4, normalize=True)
    assert feats.shape == (6, 192) and torch.allclose(feats.norm(dim=1), torch.ones(6), atol=1e-5)
    assert pids.tolist() == [r.pid for r in recs] and cams.tolist() == [r.camid for r in recs]


# ---------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------
def test_test_transform_is_resize_and_imagenet_normalisation(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=1, per_id=1, height=64, width=32)
    img = load_image(recs[0].path)
    out = build_transform(SMALL)(img)
    raw = ResizeToTensor(64, 32)(img).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out, (raw - mean) / std, atol=1e-6)


def test_train_transform_deterministic_for_a_generator_and_switchable():
    x = torch.randint(0, 256, (6, 3, 64, 32), dtype=torch.uint8)
    a = train_batch(x, SMALL, torch.Generator().manual_seed(5))
    b = train_batch(x, SMALL, torch.Generator().manual_seed(5))
    c = train_batch(x, SMALL, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    off = ReidTransformConfig(64, 32, flip=0.0, pad=0, erasing=0.0)
    plain = train_batch(x, off, torch.Generator().manual_seed(5))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(plain, (x.float() / 255 - mean) / std, atol=1e-6)


def test_flip_probability_one_mirrors():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).view(2, 3, 4, 5)
    cfg = ReidTransformConfig(4, 5, flip=1.0, pad=0, erasing=0.0, normalize=False)
    out = train_batch(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(-1).float() / 255)


def test_pad_crop_is_a_shifted_window():
    x = torch.randint(1, 256, (20, 3, 16, 8), dtype=torch.uint8)
    out = random_pad_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(20):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(padded[i, :, dy:dy + 16, dx:dx + 8], out[i])]
        assert hits
        shifts.add(hits[0])
    assert len(shifts) > 3  # offsets vary


def test_random_erasing_area_and_probability():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(400, 3, 64, 32)
    out = random_erasing(x.clone(), 0.5, (0.02, 0.4), (0.3, 1 / 0.3), 0.0, g)
    frac = (out[:, 0] == 0).flatten(1).float().mean(1)
    erased = frac > 0
    assert 0.4 < erased.float().mean() < 0.6
    assert frac[erased].min() >= 0.015 and frac[erased].max() <= 0.42
    assert torch.all(out[:, 0] == out[:, 2])  # the same rectangle in every channel
    assert torch.equal(random_erasing(x.clone(), 0.0, (0.02, 0.4), (0.3, 3.3), 0.0, g), x)


def test_transform_config_checks():
    with pytest.raises(ConfigError, match="erasing"):
        ReidTransformConfig(erasing=1.5)
    with pytest.raises(ConfigError, match="pad"):
        ReidTransformConfig(pad=-1)


# ---------------------------------------------------------------------------------------------
# P x K sampler
# ---------------------------------------------------------------------------------------------
def _labels():
    # 10 identities with 1..10 images each
    return [y for y in range(10) for _ in range(y + 1)]


@pytest.mark.parametrize("rule", ["images", "identities"])
def test_pk_sampler_batches_hold_p_ids_times_k(rule):
    labels = _labels()
    s = PKSampler(labels, p=4, k=3, seed=1, epoch=rule)
    batches = s.batches()
    assert batches
    for b in batches:
        assert len(b) == 12
        counts = Counter(labels[i] for i in b)
        assert len(counts) == 4 and set(counts.values()) == {3}
        for j in range(4):  # identity-major: K consecutive indices per identity
            assert len({labels[i] for i in b[3 * j:3 * j + 3]}) == 1
    flat = list(iter(PKSampler(labels, p=4, k=3, seed=1, epoch=rule)))
    assert flat == [i for b in batches for i in b]
    assert len(PKSampler(labels, p=4, k=3, seed=1, epoch=rule)) == len(flat)


def test_pk_sampler_replacement_only_when_needed():
    labels = _labels()
    s = PKSampler(labels, p=2, k=4, seed=0)
    for b in s.batches() + s.batches(epoch=3):
        for j in range(2):
            group = b[4 * j:4 * j + 4]
            y = labels[group[0]]
            if y + 1 >= 4:  # at least K images: K distinct ones
                assert len(set(group)) == 4
            else:
                assert len(set(group)) == y + 1  # all of its images, some repeated


def test_pk_sampler_epoch_length_rules():
    labels = _labels()  # 55 images, 10 ids
    ident = PKSampler(labels, p=4, k=4, seed=0, epoch="identities")
    assert len(ident.batches()) == 10 // 4
    imgs = PKSampler(labels, p=2, k=4, seed=0)
    chunks = sum(max(1, -(-(y + 1) // 4)) for y in range(10))  # ceil(n / K) groups per id
    used = sum(len(b) for b in imgs.batches()) // 4
    assert chunks - 2 < used <= chunks  # stops when fewer than P identities have groups left
    covered = {i for b in imgs.batches() for i in b}
    assert len(covered) >= 0.8 * len(labels)


def test_pk_sampler_deterministic_and_epochs_differ():
    labels = _labels()
    a = PKSampler(labels, 3, 2, seed=7)
    b = PKSampler(labels, 3, 2, seed=7)
    assert list(a) == list(b)  # epoch 0
    assert list(a) == list(b)  # epoch 1
    assert a.batches(0) != a.batches(1)
    assert PKSampler(labels, 3, 2, seed=8).batches(0) != a.batches(0)


def test_pk_sampler_errors():
    with pytest.raises(ConfigError, match="only 2 identities"):
        PKSampler([0, 0, 1, 1], p=4, k=2)
    with pytest.raises(ConfigError, match="epoch"):
        PKSampler([0, 1], p=1, k=1, epoch="steps")


# ---------------------------------------------------------------------------------------------
# engine
# ---------------------------------------------------------------------------------------------
def _cfg(**kw) -> ReidTrainConfig:
    base = dict(transform=SMALL, p=4, k=4, warmup_epochs=0, lr=1e-3)
    base.update(kw)
    return ReidTrainConfig(**base)


def test_lr_schedule_warmup_and_steps():
    cfg = ReidTrainConfig()
    assert cfg.lr * cfg.lr_factor(0) == pytest.approx(3.5e-5)
    assert cfg.lr * cfg.lr_factor(5) == pytest.approx(3.5e-5 + 0.5 * (3.5e-4 - 3.5e-5))
    assert cfg.lr * cfg.lr_factor(10) == pytest.approx(3.5e-4)
    assert cfg.lr * cfg.lr_factor(39) == pytest.approx(3.5e-4)
    assert cfg.lr * cfg.lr_factor(40) == pytest.approx(3.5e-5)
    assert cfg.lr * cfg.lr_factor(70) == pytest.approx(3.5e-6)
    with pytest.raises(ConfigError, match="triplet"):
        ReidTrainConfig(triplet="semi-hard")


def test_optimizer_skips_frozen_bias_and_scales_classifier_lr():
    m = build_reid_model("small_reid")
    c = IdentityClassifier(m.feature_dim, 5)
    opt = build_optimizer(m, c, ReidTrainConfig(optimizer="sgd", lr=0.01,
                                                classifier_lr_factor=10))
    assert isinstance(opt, torch.optim.SGD)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(m.neck.bn.bias) not in ids and id(m.neck.bn.weight) in ids
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])


@pytest.mark.parametrize("triplet", ["soft", "hinge"])
def test_training_drives_loss_down_and_keeps_bias_frozen(tmp_path, triplet):
    recs = write_identity_images(tmp_path, num_ids=8, per_id=4)
    labels = [r.pid - 1 for r in recs]
    torch.manual_seed(0)
    m = build_reid_model("small_reid")
    c = IdentityClassifier(m.feature_dim, 8)
    stats = train_epochs(m, c, recs, labels, _cfg(triplet=triplet), epochs=8,
                         generator=torch.Generator().manual_seed(1))
    hist = stats["history"]
    assert len(hist) == 8 and stats["steps"] == 16 and stats["images"] == 8 * 32
    assert hist[-1]["ce"] < hist[0]["ce"] - 0.2
    assert (hist[-1]["loss"] + hist[-2]["loss"]) < (hist[0]["loss"] + hist[1]["loss"]) - 0.2
    assert hist[-1]["accuracy"] > 0.5
    assert torch.all(m.neck.bn.bias == 0) and not m.neck.bn.bias.requires_grad
    assert not m.training and not c.training


def test_training_is_deterministic_and_calls_extra_loss(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=4, per_id=4)
    labels = [r.pid - 1 for r in recs]
    calls = []

    def extra(model, images, f, f_bn, y):
        calls.append((tuple(images.shape), tuple(f.shape), tuple(f_bn.shape), y.tolist()))
        return 0.1 * f.pow(2).mean()

    results = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_reid_model("small_reid")
        c = IdentityClassifier(m.feature_dim, 4)
        stats = train_epochs(m, c, recs, labels, _cfg(), epochs=2, extra_loss=extra,
                             generator=torch.Generator().manual_seed(3), start_epoch=4)
        results.append((stats["loss"], m.embed(torch.ones(1, 3, 64, 32))))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert len(calls) == 4 and calls[0][:3] == ((16, 3, 64, 32), (16, 192), (16, 192))
    assert stats["extra"] > 0
    assert [h["epoch"] for h in stats["history"]] == [4, 5]


def test_training_rejects_bad_labels(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=4, per_id=2)
    m = build_reid_model("small_reid")
    c = IdentityClassifier(m.feature_dim, 3)
    with pytest.raises(ValueError, match=r"values in \[0, 2\]"):
        train_epochs(m, c, recs, [r.pid - 1 for r in recs], _cfg(p=2, k=2), epochs=1)
    with pytest.raises(ValueError, match="8 integer labels"):
        train_epochs(m, c, recs, [0, 1], _cfg(p=2, k=2), epochs=1)


def test_union_train_set_and_train_reid(tmp_path):
    a = write_identity_images(tmp_path / "a", num_ids=3, per_id=4, seed=1)
    b = write_identity_images(tmp_path / "b", num_ids=2, per_id=4, seed=2)
    sa = ReidSplit("a", tmp_path / "a", a, [], [])
    sb = ReidSplit("b", tmp_path / "b", b, [], [])
    recs, labels = union_train_set([sa, sb])
    assert len(recs) == 20 and sorted(set(labels)) == list(range(5))
    assert labels[:12] == sa.train_labels()[0]  # same pid in a and b: different identities
    assert labels[12] == 3 and labels[-1] == 4
    model, clf, stats = train_reid([sa, sb], _cfg(p=2, k=4), epochs=1, seed=0)
    assert clf.num_classes == 5 and stats["steps"] >= 1
    feats, pids, cams = extract_features(model, a, build_transform(SMALL), batch_size=5)
    assert feats.shape == (12, 192) and pids.tolist() == [r.pid for r in a]


def test_random_erasing_per_channel_fill_as_bot():
    x = torch.full((50, 3, 32, 16), 9.0)
    out = random_erasing(x, 1.0, (0.02, 0.4), (0.3, 1 / 0.3), (0.485, 0.456, 0.406),
                         torch.Generator().manual_seed(0))
    erased = out[:, 0] != 9.0
    assert erased.flatten(1).any(1).all()  # p = 1: every image has a rectangle
    for c, v in enumerate((0.485, 0.456, 0.406)):
        assert torch.equal(out[:, c] != 9.0, erased)
        assert torch.allclose(out[:, c][erased], torch.tensor(v))
    with pytest.raises(ValueError, match="3 channel values"):
        random_erasing(x, 1.0, (0.02, 0.4), (0.3, 3.3), (0.5, 0.5), None)


def test_config_from_mapping():
    cfg = ReidTrainConfig.from_mapping({"triplet": "hinge", "warmup-epochs": 0, "height": 128,
                                        "width": 64, "erasing": 0.0, "milestones": [5, 9]})
    assert cfg.triplet == "hinge" and cfg.warmup_epochs == 0 and cfg.milestones == (5, 9)
    assert (cfg.transform.height, cfg.transform.width, cfg.transform.erasing) == (128, 64, 0.0)
    assert cfg.transform.pad == 10 and cfg.p == 16
    with pytest.raises(ConfigError, match="unknown key.*'lr-decay'"):
        ReidTrainConfig.from_mapping({"lr-decay": 0.1})


def test_extract_features_flip_and_normalize(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=2, per_id=2)
    m = build_reid_model("small_reid")
    t = build_transform(SMALL)
    plain, _, _ = extract_features(m, recs, t, batch_size=3)
    flipped, _, _ = extract_features(m, recs, t, batch_size=3, flip=True, normalize=True)
    x = torch.stack([t(load_image(r.path)) for r in recs])
    ref = torch.nn.functional.normalize(m.embed(x) + m.embed(x.flip(-1)), dim=1)
    assert torch.allclose(plain, m.embed(x), atol=1e-5)
    assert torch.allclose(flipped, ref, atol=1e-5)


def test_training_with_bfloat16_autocast_on_cpu(tmp_path):
    recs = write_identity_images(tmp_path, num_ids=4, per_id=4)
    torch.manual_seed(0)
    m = build_reid_model("small_reid")
    c = IdentityClassifier(m.feature_dim, 4)
    before = m.backbone.stem[0].weight.detach().clone()
    stats = train_epochs(m, c, recs, [r.pid - 1 for r in recs], _cfg(amp=True), epochs=2)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in stats["history"])
    assert not torch.equal(before, m.backbone.stem[0].weight)
    assert m.backbone.stem[0].weight.dtype == torch.float32
