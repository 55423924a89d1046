"""Tracking embedders: the colour-histogram embedder separates differently dressed people across
cameras; a fedfr re-ID checkpoint loads by path and embeds crops and clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfr.errors import DataFormatError
from fedfr.reid.data.synthetic import DomainSpec, _camera, _person, _render
from fedfr.reid.models import build_reid_model
from fedfr.tracking.embedders import (
    ColourHistogramEmbedder,
    ReidModelEmbedder,
    build_embedder,
    crop_boxes,
    load_reid_model,
    save_reid_model,
)


def _two_people():
    """Crops of two people with the same body and different clothes (red top / blue trousers
    vs green top / grey trousers), 4 cameras with their colour casts x 3 views each."""
    spec = DomainSpec(name="emb", seed=0, height=64, width=32, occlusion_prob=0.0)
    base = dict(_person(spec, 1), pattern=0, bag=0, hat=False)
    red, blue = np.float32([0.8, 0.1, 0.1]), np.float32([0.15, 0.2, 0.6])
    green, grey = np.float32([0.2, 0.6, 0.2]), np.float32([0.5, 0.5, 0.5])
    people = {1: dict(base, top=red, top2=red, bottom=blue),
              2: dict(base, top=green, top2=green, bottom=grey)}
    rows = [{"pid": pid, "cam": c, "view": 1.3 * k + 0.4 * c, "stride": float(k), "dx": 0.0,
             "dy": 0.0, "scale": 0.9, "bright": 0.0, "occ": False, "occ_kind": 0, "occ_a": 0.3,
             "occ_b": 0.5, "clutter_x": 0.2 * k, "noise_seed": 10 * c + k}
            for pid in (1, 2) for c in range(4) for k in range(3)]
    images = _render(spec, rows, people, [_camera(spec, c) for c in range(4)])
    return images, np.array([r["pid"] for r in rows]), np.array([r["cam"] for r in rows])


def test_colour_histogram_separates_two_differently_dressed_people():
    images, pids, cams = _two_people()
    f = ColourHistogramEmbedder().embed(images)
    assert f.shape == (24, 3 * 19) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    dist = 1 - f @ f.T
    dist[cams[:, None] == cams[None, :]] = np.inf  # match across cameras only
    assert np.all(pids[dist.argmin(axis=1)] == pids)  # cross-camera rank-1 = 100 %
    same = (pids[:, None] == pids[None, :]) & np.isfinite(dist)
    diff = (pids[:, None] != pids[None, :]) & np.isfinite(dist)
    assert dist[same].mean() + 0.2 < dist[diff].mean()
    # the same clothes in another colour space still separate
    g = ColourHistogramEmbedder(space="rgb", bins=3).embed(images)
    d2 = 1 - g @ g.T
    assert d2[same].mean() < d2[diff].mean()


def test_embedder_input_is_checked():
    e = ColourHistogramEmbedder()
    with pytest.raises(ValueError, match="uint8"):
        e.embed(np.zeros((2, 8, 4, 3), np.float32))
    assert e.embed(np.zeros((0, 8, 4, 3), np.uint8)).shape == (0, e.dim)
    clips = np.random.default_rng(0).integers(0, 255, (3, 4, 16, 8, 3), dtype=np.uint8)
    c = e.embed_clips(clips)
    assert c.shape == (3, e.dim)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)


def test_crop_boxes_clips_and_resizes():
    img = np.zeros((50, 40, 3), np.uint8)
    img[10:30, 5:15] = 200
    crops = crop_boxes(img, np.array([[5, 10, 10, 20], [-10, -10, 5, 5], [35, 45, 30, 30]]),
                       (16, 8))
    assert crops.shape == (3, 16, 8, 3)
    assert crops[0].min() == 200 and crops[1].max() == 0


def test_reid_checkpoint_by_path(tmp_path):
    torch.manual_seed(0)
    model = build_reid_model("small_reid").eval()
    path = tmp_path / "reid.pt"
    save_reid_model(path, model, "small_reid")
    emb = ReidModelEmbedder.from_path(path, size=(64, 32), batch_size=3)
    crops = np.random.default_rng(1).integers(0, 255, (5, 64, 32, 3), dtype=np.uint8)
    f = emb.embed(crops)  # 5 crops in batches of 3 (crops of several cameras in one call)
    assert f.shape == (5, emb.dim) and emb.dim == model.feature_dim
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    from fedfr.reid.data.transforms import normalize

    with torch.no_grad():
        ref = model.embed(normalize(torch.from_numpy(crops).permute(0, 3, 1, 2)),
                          normalize=True).numpy()
    np.testing.assert_allclose(f, ref, atol=1e-4)
    # other input sizes are resized; clips average their frames
    assert emb.embed(crops[:, :40, :20].copy()).shape == (5, emb.dim)
    clips = emb.embed_clips(np.stack([crops[:4], crops[1:]]))
    assert clips.shape == (2, emb.dim)
    # a bare state dict needs the architecture name; a wrong one is named in the error
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(DataFormatError, match="architecture name"):
        load_reid_model(tmp_path / "bare.pt")
    assert load_reid_model(tmp_path / "bare.pt", "small_reid") is not None
    with pytest.raises(DataFormatError, match="does not fit 'resnet18'"):
        load_reid_model(tmp_path / "bare.pt", "resnet18")
    with pytest.raises(DataFormatError, match="no such"):
        load_reid_model(tmp_path / "missing.pt")
    assert isinstance(build_embedder(str(path), size=(64, 32)), ReidModelEmbedder)
    assert isinstance(build_embedder("colour-hist"), ColourHistogramEmbedder)


def test_reid_model_from_a_federation_and_pruned_widths(tmp_path):
    """A re-ID federation's final_model.pt (backbone.* arrays, FedFR's phi) and a model whose
    layers are narrower than the architecture's (pruned) both load by path."""
    import torch

    from fedfr.pruning.io import shrink_to
    from fedfr.reid.models import build_reid_model
    from fedfr.tracking.embedders import (
        ReidModelEmbedder,
        load_reid_model,
        save_reid_model,
        stored_input_size,
    )

    torch.manual_seed(0)
    net = build_reid_model("small_reid").eval()
    arrays = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    torch.save({**arrays, "phi": torch.zeros(5, 192)}, tmp_path / "final_model.pt")
    got = load_reid_model(tmp_path / "final_model.pt", "small_reid")
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(got(x)[1], net(x)[1])
    narrow = {k: (v[:-8] if v.dim() and k.startswith(("backbone.stages.2.conv1",
                                                      "backbone.stages.2.bn1")) else v)
              for k, v in net.state_dict().items()}
    narrow["backbone.stages.2.conv2.weight"] = narrow["backbone.stages.2.conv2.weight"][:, :-8]
    pruned = shrink_to(build_reid_model("small_reid"), narrow).eval()
    save_reid_model(tmp_path / "pruned.pt", pruned, "small_reid", meta={"input": [64, 32]})
    back = load_reid_model(tmp_path / "pruned.pt")
    assert back.backbone.stages[2].conv1.out_channels == 184
    with torch.no_grad():
        assert torch.equal(back(x)[1], pruned(x)[1])
    assert stored_input_size(tmp_path / "pruned.pt") == (64, 32)
    assert ReidModelEmbedder.from_path(tmp_path / "pruned.pt").size == (64, 32)
