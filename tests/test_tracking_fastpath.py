"""The tuned re-ID path of the tracker (ReidModelEmbedder calling the net directly under
inference mode, crop boxes in plain float arithmetic) gives the same result files as the
straightforward path it replaced (ReidNet.embed under no_grad, numpy per-box clipping)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import fedfr.tracking.track_features as track_features
from fedfr.reid.data.transforms import normalize
from fedfr.reid.models import build_reid_model
from fedfr.tracking.detection import PrecomputedDetector
from fedfr.tracking.embedders import ClipEmbedder, ReidModelEmbedder, crop_boxes, l2_normalise
from fedfr.tracking.pipeline import TrackingConfig, run_tracking
from fedfr.tracking.scene import SceneSpec, write_scene
from fedfr.tracking.sources import ImageFolderSource


def reference_crops(image, tlwh, size=(256, 128)):
    """crop_boxes as it was: numpy clipping per box."""
    img_h, img_w = image.shape[:2]
    out = np.zeros((len(tlwh), size[0], size[1], 3), np.uint8)
    for i, (x, y, w, h) in enumerate(np.asarray(tlwh, np.float64).reshape(-1, 4)):
        x0 = int(np.clip(np.floor(x), 0, img_w - 1))
        y0 = int(np.clip(np.floor(y), 0, img_h - 1))
        x1 = int(np.clip(np.ceil(x + w), x0 + 1, img_w))
        y1 = int(np.clip(np.ceil(y + h), y0 + 1, img_h))
        out[i] = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).resize(
            (size[1], size[0]), Image.BILINEAR))
    return out


class ReferenceEmbedder(ClipEmbedder):
    """The embedder as it was: ReidNet.embed (eval mode toggled per call) under no_grad."""

    def __init__(self, model, size):
        self.model, self.size = model, size
        self.dim = 192

    def embed(self, crops):
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
        with torch.no_grad():
            return l2_normalise(self.model.embed(normalize(x), feature="after").numpy())


def test_crop_boxes_equal_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes = np.c_[rng.uniform(-30, 170, 40), rng.uniform(-30, 130, 40),
                  rng.uniform(0.2, 60, 40), rng.uniform(0.2, 90, 40)]
    assert np.array_equal(crop_boxes(image, boxes, (32, 16)),
                          reference_crops(image, boxes, (32, 16)))


def test_result_files_identical_to_reference_path(tmp_path, monkeypatch):
    scene = tmp_path / "scene"
    write_scene(SceneSpec(setup="overlapping", frames=10, frame_rate=10.0, width=320,
                          height=240, num_people=6, num_cameras=2), scene)
    torch.manual_seed(0)
    model = build_reid_model("small_reid").eval()
    size = (64, 32)

    def run(embedder, out):
        sources = [ImageFolderSource(scene / c) for c in ("c001", "c002")]
        det = PrecomputedDetector({s.camera: s.info.root / "det" / "det.txt" for s in sources})
        cfg = TrackingConfig(crop_size=size, exit_after=3)
        return run_tracking(sources, det, embedder, out, cfg)

    new = run(ReidModelEmbedder(model, size=size), tmp_path / "new")
    with monkeypatch.context() as m:
        m.setattr(track_features, "crop_boxes", reference_crops)
        old = run(ReferenceEmbedder(model, size), tmp_path / "old")
    files = [p.relative_to(tmp_path / "new") for p in (tmp_path / "new").rglob("*.txt")]
    assert len(files) == 5  # 2 cameras x (gallery, motion-only) + aic.txt
    for f in files:
        assert (tmp_path / "new" / f).read_bytes() == (tmp_path / "old" / f).read_bytes(), f
    assert new.matches == old.matches
    assert sum(1 for _ in (tmp_path / "new" / "c001.txt").open()) > 10


def test_fuse_bn_folds_the_trunk_and_keeps_the_features():
    from torch import nn

    from fedfr.tracking.embedders import fuse_conv_bn

    torch.manual_seed(0)
    net = build_reid_model("small_reid").eval()
    for m in net.modules():  # non-trivial statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_conv_bn(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.backbone.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.backbone.modules())  # a copy
    crops = np.random.default_rng(0).integers(0, 255, (5, 64, 32, 3), dtype=np.uint8)
    a = ReidModelEmbedder(net, size=(64, 32)).embed(crops)
    b = ReidModelEmbedder(net, size=(64, 32), fuse_bn=True).embed(crops)
    assert np.abs(a - b).max() < 1e-5
