"""Train a torchvision person detector from scratch on MOTChallenge-layout sequences.

``python -m fedfr.tracking.train_detector --seq DIR [--seq DIR ...] --out det.pt``: every frame
of each sequence (``seqinfo.ini``, ``img1/``, ``gt/gt.txt``) with its considered pedestrian boxes
(flag != 0, class 1, or -1 in MOT15-style files; visibility >= ``--min-visibility``) is a
training image. The model is one of ``TORCHVISION_ARCHS`` built with ``weights=None,
weights_backbone=None`` (nothing is downloaded), 2 classes (background, person). The checkpoint
(``{"model": state_dict, "arch", "num_classes", "steps", "loss"}``) loads into
``TorchvisionDetector(arch, checkpoint=...)``. Meant for synthetic frames (pedestrians of
``fedfr.reid.data.synthetic`` composited on backgrounds, written with their boxes in this layout)
and works on any MOT-layout sequence with ground truth.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.tracking.detection import TORCHVISION_ARCHS, TorchvisionDetector
from fedfr.tracking.motchallenge import PEDESTRIAN, read_ground_truth, rows_by_frame
from fedfr.tracking.sources import ImageFolderSource, read_image


def load_samples(seq_dirs: Sequence[str | Path], min_visibility: float = 0.0
                 ) -> list[tuple[Path, np.ndarray]]:
    """(image file, boxes (K, 4) float32 xyxy pixels) per frame of every sequence."""
    out = []
    for seq in seq_dirs:
        src = ImageFolderSource(seq, load_images=False)
        gt_path = Path(seq) / "gt" / "gt.txt"
        if not gt_path.is_file():
            raise DataFormatError(f"{gt_path}: no ground truth (expected gt/gt.txt)")
        gt = read_ground_truth(gt_path)
        keep = (gt[:, 6] != 0) & np.isin(gt[:, 7], (PEDESTRIAN, -1)) & (gt[:, 8] >= min_visibility)
        table = rows_by_frame(gt[keep])
        for index, path in src.files:
            rows = table.get(index, np.zeros((0, 9)))
            tlwh = rows[:, 2:6]
            boxes = np.concatenate([tlwh[:, :2] - 1, tlwh[:, :2] - 1 + tlwh[:, 2:]], axis=1)
            out.append((path, boxes.astype(np.float32).reshape(-1, 4)))
    if not out:
        raise DataFormatError(f"no frames in {', '.join(map(str, seq_dirs))}")
    return out


def train_detector(samples: Sequence[tuple[Path, np.ndarray]], arch: str = TORCHVISION_ARCHS[0],
                   steps: int = 1000, batch: int = 4, lr: float = 0.01, seed: int = 0,
                   device: str = "cpu", log_every: int = 50) -> tuple[Any, list[float]]:
    """SGD (momentum 0.9, weight decay 1e-4, linear warm-up over the first 10 % of steps) on
    random batches of ``samples``; returns (the torchvision model, loss per step)."""
    import torch

    if steps < 1 or batch < 1:
        raise ConfigError(f"train_detector: steps and batch >= 1 expected, got {steps}, {batch}")
    torch.manual_seed(seed)
    det = TorchvisionDetector(arch, device=device)
    model = det.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warm = max(1, steps // 10)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm)
        idx = rng.choice(len(samples), size=min(batch, len(samples)), replace=False)
        images, targets = [], []
        for i in idx:
            path, boxes = samples[int(i)]
            img = torch.from_numpy(np.ascontiguousarray(read_image(path))).permute(2, 0, 1)
            images.append(img.to(device, torch.float32).div_(255.0))
            targets.append({"boxes": torch.as_tensor(boxes, device=device).reshape(-1, 4),
                            "labels": torch.ones(len(boxes), dtype=torch.int64, device=device)})
        loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    model.eval()
    return model, losses


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="python -m fedfr.tracking.train_detector",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seq", action="append", required=True, type=Path,
                    help="MOTChallenge sequence folder with gt/gt.txt (repeatable)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--arch", default=TORCHVISION_ARCHS[0], choices=TORCHVISION_ARCHS)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--min-visibility", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    samples = load_samples(a.seq, a.min_visibility)
    model, losses = train_detector(samples, a.arch, a.steps, a.batch, a.lr, a.seed, a.device)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "arch": a.arch, "num_classes": 2,
                "steps": a.steps, "loss": losses[-1]}, a.out)
    print(f"{a.arch} trained from scratch on {len(samples)} frames, {a.steps} steps: "
          f"loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f} -> {a.out}")
    return 0


if __name__ == "__main__":
    from fedfr.errors import run_entry_point

    raise SystemExit(run_entry_point(main, "python -m fedfr.tracking.train_detector"))
