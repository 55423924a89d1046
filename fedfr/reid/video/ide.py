"""The IDE feature extractor of re-Detect and Link (thesis Sec. 2.5.1: an ID classifier trained
on the *original*, noisy training tracklets), its checkpoint file, and a command to train it.

Checkpoint (``torch.save`` of a dict): ``format = "fedfr-reid-net"``, ``model`` (a
``build_reid_model`` name), ``height`` / ``width`` (input size, pixels), ``state_dict`` (the
ReidNet's). ``python -m fedfr.reid.video.ide --in TRACKLET_ROOT --out ide.pt`` trains one on the
frames of a MARS-layout folder's train tracklets (each frame an image labelled by its tracklet).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from fedfr.errors import DataFormatError
from fedfr.reid.data.records import ReidImage, ReidSplit, Tracklet
from fedfr.reid.models import build_reid_model
from fedfr.reid.models.net import ReidNet

FORMAT = "fedfr-reid-net"


def save_reid_net(path: str | Path, model: ReidNet, height: int, width: int) -> Path:
    """Write ``model`` as a fedfr-reid-net checkpoint; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "model": model.name, "height": height, "width": width,
                "state_dict": model.state_dict()}, path)
    return path


def load_reid_net(path: str | Path) -> tuple[ReidNet, int, int]:
    """(model in eval mode, height, width) from a fedfr-reid-net checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such re-ID checkpoint")
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not a {FORMAT} checkpoint (expected a dict with "
                              f"format={FORMAT!r}, model, height, width, state_dict)")
    model = build_reid_model(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataFormatError(f"{path}: state_dict does not fit {ckpt['model']} "
                              f"({str(exc).splitlines()[0]})") from exc
    return model.eval(), int(ckpt["height"]), int(ckpt["width"])


def frames_as_images(tracklets: Sequence[Tracklet]) -> list[ReidImage]:
    """Every frame of ``tracklets`` as a ReidImage with its tracklet's pid and camera."""
    return [ReidImage(p, t.pid, t.camid) for t in tracklets for p in t.paths]


def main(argv: Sequence[str] | None = None) -> int:
    from fedfr.reid.data.video.mars import read_mars
    from fedfr.reid.training import ReidTrainConfig, train_reid

    ap = argparse.ArgumentParser(prog="python -m fedfr.reid.video.ide", description=__doc__)
    ap.add_argument("--in", dest="root", required=True, type=Path, help="MARS-layout folder")
    ap.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    ap.add_argument("--model", default="small_reid")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--height", type=int, default=None, help="default: the frames' height")
    ap.add_argument("--width", type=int, default=None, help="default: the frames' width")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from PIL import Image

    split = read_mars(a.root)
    images = frames_as_images(split.train)
    if not images:
        raise DataFormatError(f"{a.root}: no training tracklets")
    with Image.open(images[0].path) as im:
        w0, h0 = im.size
    h, w = a.height or h0, a.width or w0
    n_ids = len({r.pid for r in images})
    cfg = ReidTrainConfig.from_mapping({"height": h, "width": w, "p": min(16, n_ids),
                                        "warmup_epochs": min(2, a.epochs),
                                        "milestones": [max(1, a.epochs * 3 // 4)]})
    net, _, stats = train_reid(ReidSplit("ide", split.root, images, [], []), cfg,
                               epochs=a.epochs, model_name=a.model, seed=a.seed)
    save_reid_net(a.out, net, h, w)
    print(f"IDE {a.model} trained on {len(images)} frames of {len(split.train)} tracklets, "
          f"{a.epochs} epochs ({h}x{w}): loss {stats['loss']:.3f}, accuracy "
          f"{stats['accuracy']:.3f}, {stats['seconds']:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    from fedfr.errors import run_entry_point

    raise SystemExit(run_entry_point(main, "python -m fedfr.reid.video.ide"))
