"""re-Detect and Link (fedfr.reid.video.dl): geometry, candidate choice, Link repairs, and the
folder command on small generated tracklets."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.tracklets import render_tracklets
from fedfr.reid.data.video.mars import read_mars
from fedfr.reid.video.dl import (
    DLConfig,
    TrackletTruthDetector,
    iou,
    main,
    measure,
    recrop_geometry,
    relink_tracklet,
    render_recrop,
    run_dl,
    truth_box,
)
from fedfr.tracking.detection import Detections, Detector
from fedfr.tracking.sources import Frame

H, W = 64, 32
COLOURS = {"a": (220, 30, 30), "b": (30, 30, 220), "c": (30, 200, 30)}


def person_frame(who: str, x0: int = 8, x1: int = 24, y0: int = 4, y1: int = 60,
                 second: tuple[str, int, int] | None = None) -> np.ndarray:
    """A grey crop with a coloured 'person' block (and optionally a second one)."""
    img = np.full((H, W, 3), 128, np.uint8)
    if second is not None:
        img[y0:y1, second[1]:second[2]] = COLOURS[second[0]]
    img[y0:y1, x0:x1] = COLOURS[who]
    return img


class ColourFeatures:
    """Test stand-in for a re-ID model: L2-normalised mean colour of the frame's non-grey
    pixels (the two synthetic 'people' differ in colour)."""

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for f in frames:
            px = f.reshape(-1, 3).astype(np.float64)
            fg = px[np.abs(px - 128).max(1) > 20]
            m = (fg if len(fg) else px).mean(0) - 60
            out.append(m / np.linalg.norm(m))
        return np.asarray(out)


class ListDetector(Detector):
    """Returns the given boxes (unpadded crop pixels) for each frame name, padding read off
    the image."""

    def __init__(self, boxes: dict[str, list[tuple[float, float, float, float]]]):
        self.boxes = boxes

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        for f in frames:
            ph, pw = f.image.shape[:2]
            ox, oy = (pw - W) / 2, (ph - H) / 2
            b = np.array(self.boxes[f.camera], np.float32).reshape(-1, 4)
            b = b + np.array([ox, oy, ox, oy], np.float32)
            out.append(Detections(b, np.full(len(b), 0.9), np.ones(len(b))))
        return out


def test_iou_and_truth_box() -> None:
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    x1, y1, x2, y2 = truth_box((0.0, 0.0, 0.9), 32, 64)
    assert (y1, y2) == pytest.approx((3.2, 60.8)) and (x1 + x2) / 2 == pytest.approx(16)


def test_recrop_centres_and_scales_box() -> None:
    cfg = DLConfig()
    rc = recrop_geometry((4.0, 10.0, 16.0, 40.0), W, H, W, H, cfg)  # w/h = 0.4: not slim
    assert rc.shift == ""
    # the box fills the output height; the region is the box widened to the output aspect
    assert rc.region == pytest.approx((2.5, 10.0, 17.5, 40.0))
    h0, h1, w0, w1 = rc.mask
    assert (h0, h1) == (0, 64) and w1 - w0 == pytest.approx(25.6, abs=1)
    img = person_frame("a", 4, 16, 10, 40)
    out = render_recrop(img, rc, W, H, cfg.pad_value)
    assert out.shape == (H, W, 3)
    assert (out[:, :w0] == cfg.pad_value).all()  # padding outside the mask
    assert (np.abs(out[2:62, w0 + 2:w1 - 2].astype(int) - COLOURS["a"]).max() < 10)


def test_slim_box_on_the_left_is_shifted_right() -> None:
    cfg = DLConfig()
    left = recrop_geometry((0.0, 4.0, 6.0, 60.0), W, H, W, H, cfg)  # cut by the left border
    right = recrop_geometry((26.0, 4.0, 32.0, 60.0), W, H, W, H, cfg)
    centred = recrop_geometry((0.0, 4.0, 6.0, 60.0), W, H, W, H,
                              DLConfig(slim_ratio=0.0))
    assert left.shift == "right" and right.shift == "left" and centred.shift == ""
    assert left.mask[2] > centred.mask[2]  # moved right
    assert right.mask[3] < W - centred.mask[2]  # moved left
    # the visible part ends where a whole person's right side would
    whole = 0.4 * 56 * (64 / 56)
    assert left.mask[3] == pytest.approx((W + whole) / 2, abs=1)


def test_first_frame_largest_then_nearest_to_global_feature() -> None:
    # frame 1: a big box of person a and a smaller one of b; then b is the bigger one
    frames = [person_frame("a", 2, 14, 2, 62, second=("b", 18, 28)),
              person_frame("a", 2, 12, 10, 50, second=("b", 16, 30))]
    boxes = {"f1": [(18, 10, 28, 50), (2, 2, 14, 62)], "f2": [(16, 2, 30, 62), (2, 10, 12, 50)]}
    res = relink_tracklet(frames, ["f1", "f2"], ListDetector(boxes), ColourFeatures(),
                          DLConfig(split=False, remove_intruders=False))
    assert res.recrops[0].box == (2, 2, 14, 62)
    assert res.actions[0]["why"] == "largest"
    assert res.recrops[1].box == (2, 10, 12, 50) and res.actions[1]["why"] == "nearest-fg"
    # without a re-ID model the second frame follows the IoU with the first box
    res_iou = relink_tracklet(frames, ["f1", "f2"], ListDetector(boxes), None,
                              DLConfig(select="iou"))
    assert res_iou.recrops[1].box == (2, 10, 12, 50) and res_iou.actions[1]["why"] == "iou"


def test_no_detection_keeps_the_original_crop() -> None:
    img = person_frame("a")
    res = relink_tracklet([img], ["f1"], ListDetector({"f1": []}), None, DLConfig())
    assert res.recrops[0].box is None and (res.images[0] == img).all()
    assert res.actions[0]["action"] == "keep-original"


def whole(names: list[str]) -> ListDetector:
    return ListDetector({n: [(4, 4, 28, 60)] for n in names})


def test_identity_switch_is_split_and_the_minority_dropped() -> None:
    frames = [person_frame("a")] * 7 + [person_frame("b")] * 3
    names = [f"f{i}" for i in range(10)]
    res = relink_tracklet(frames, names, whole(names), ColourFeatures(), DLConfig())
    assert res.splits == [7]
    assert res.kept == [True] * 7 + [False] * 3
    assert any(a["action"] == "split-drop" for a in res.actions)
    # a return to the first person is linked back to it
    frames = [person_frame("a")] * 4 + [person_frame("b")] * 3 + [person_frame("a")] * 3
    res = relink_tracklet(frames, names, whole(names), ColourFeatures(), DLConfig())
    assert res.kept == [True] * 4 + [False] * 3 + [True] * 3
    assert [a["action"] for a in res.actions if a["action"] != "recrop"] == [
        "split-drop", "link-back"]
    # no switch, no split
    res = relink_tracklet([person_frame("a")] * 10, names, whole(names), ColourFeatures(),
                          DLConfig())
    assert res.splits == [] and all(res.kept)


def test_intruder_frames_far_from_the_medoid_are_removed() -> None:
    frames = [person_frame("a")] * 10
    frames[3] = person_frame("a", 20, 28, second=("c", 4, 20))  # a second person fills the box
    names = [f"f{i}" for i in range(10)]
    res = relink_tracklet(frames, names, whole(names), ColourFeatures(), DLConfig(split=False))
    assert res.kept == [i != 3 for i in range(10)]
    assert [a["action"] for a in res.actions if a["action"] != "recrop"] == ["remove-intruder"]
    off = relink_tracklet(frames, names, whole(names), ColourFeatures(),
                          DLConfig(split=False, remove_intruders=False))
    assert all(off.kept)


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="select"):
        DLConfig(select="closest")
    with pytest.raises(ConfigError, match="alpha"):
        DLConfig(alpha=1.5)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    return render_tracklets("synth-mars", root / "set", num_ids=4, frames=(3, 4),
                            max_visits=2, fragments=(2, 2), distractor_tracklets=1,
                            junk_tracklets=1, misalign_prob=1.0, intruder_prob=0.0,
                            switch_prob=0.0)


def test_run_dl_writes_a_mars_copy_and_realigns_boxes(tiny_set, tmp_path) -> None:
    src = read_mars(tiny_set, gallery="official")
    log = run_dl(tiny_set, tmp_path / "out", "gt")
    out = read_mars(tmp_path / "out", gallery="official")
    assert [t.pid for t in out.test] == [t.pid for t in src.test]
    assert out.query_index == src.query_index
    assert sum(len(t) for t in out.train + out.test) == log["summary"]["frames_in"]
    assert all(t.truth is not None for t in out.test)
    info = tmp_path / "out" / "mars" / "info"
    assert json.loads((info / "dl_log.json").read_text())["summary"]["recropped"] > 0
    assert (info / "dl_log.csv").read_text().count("recrop") >= log["summary"]["recropped"]
    m = measure(log, DLConfig())
    assert m["iou_after"]["misaligned"] > m["iou_before"]["misaligned"] + 0.2
    # the mapped truth puts the person in the centre of the re-cropped clean frames
    # (frames whose body reaches past the border by less than the truncation tolerance are
    # clipped and shifted a little)
    dx = np.abs([b[0] for t in out.train + out.test
                 for b, tr in zip(t.truth.box, t.truth.truncated, strict=True) if not tr])
    assert len(dx) and np.median(dx) < 0.005 and dx.mean() < 0.02
    with pytest.raises(ConfigError, match="not empty"):
        run_dl(tiny_set, tmp_path / "out", "gt")


def test_command_and_detector_errors(tiny_set, tmp_path, capsys) -> None:
    assert main(["--in", str(tiny_set), "--out", str(tmp_path / "o"), "--margin", "0.05",
                 "--split", "false"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["tracklets"] > 0
    with pytest.raises(DataFormatError, match="no such detector file"):
        main(["--in", str(tiny_set), "--out", str(tmp_path / "o2"), "--detector",
              str(tmp_path / "missing.onnx")])
    with pytest.raises(DataFormatError, match="frame truth"):
        TrackletTruthDetector(read_mars(tiny_set).train[:0], (W, H))


def test_ide_checkpoint_round_trip_and_before_after_evaluation(tiny_set, tmp_path) -> None:
    import torch

    from fedfr.reid.models import build_reid_model
    from fedfr.reid.video.dl_eval import evaluate_folder, tracklet_features
    from fedfr.reid.video.ide import load_reid_net, save_reid_net

    torch.manual_seed(0)
    net = build_reid_model("small_reid")
    path = save_reid_net(tmp_path / "ide.pt", net, H, W)
    back, h, w = load_reid_net(path)
    assert (h, w) == (H, W)
    split = read_mars(tiny_set)
    f1 = tracklet_features(back, split.test[:2], h, w)
    f2 = tracklet_features(net.eval(), split.test[:2], h, w)
    assert f1.shape == (2, net.feature_dim) and np.allclose(f1, f2, atol=1e-5)
    res = evaluate_folder(tiny_set, path)
    assert {"mars-official", "mars-clean"} <= set(res)
    assert all(0.0 <= r["mAP"] <= 1.0 and r["protocol"] == k for k, r in res.items())
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(DataFormatError, match="not a fedfr-reid-net checkpoint"):
        load_reid_net(tmp_path / "bad.pt")


def test_torchscript_detector_by_path(tiny_set, tmp_path) -> None:
    import torch

    class CentreBox(torch.nn.Module):
        """Detects one 'person' box: the middle half of the input's width, full height of the
        unpadded crop (pad 0.2 per side -> 1/1.4 of the padded height)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, _, h, w = x.shape
            hh = h / 1.4
            row = torch.tensor([w * 0.3, (h - hh) / 2, w * 0.7, (h + hh) / 2, 0.9, 1.0])
            return row.repeat(b, 1, 1)

    path = tmp_path / "det.pt"
    torch.jit.script(CentreBox()).save(str(path))
    assert main(["--in", str(tiny_set), "--out", str(tmp_path / "o"), "--detector",
                 str(path)]) == 0
    log = json.loads((tmp_path / "o" / "mars" / "info" / "dl_log.json").read_text())
    assert log["detector"] == "ExportedDetector"
    boxes = {tuple(a["box"]) for a in log["actions"] if a["action"] == "recrop"}
    # padded crop 44 x 90 (pads round(0.2 * 32) = 6, round(0.2 * 64) = 13): box back in crop
    # pixels = (13.2 - 6, 12.86 - 13, 30.8 - 6, 77.14 - 13)
    assert len(boxes) == 1
    assert next(iter(boxes)) == pytest.approx((7.2, -0.14, 24.8, 64.14), abs=0.02)
