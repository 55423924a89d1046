import numpy as np
import pytest
import torch
import torchvision.models.detection  # noqa: F401  (import cost paid at collection)

from fedfr.errors import DataFormatError
from fedfr.tracking.detection import (
    Detections,
    ExportedDetector,
    GroundTruthNoiseDetector,
    NoiseModel,
    PrecomputedDetector,
    TorchvisionDetector,
)
from fedfr.tracking.sources import Frame
from tests.tracking_fixtures import MOT17_MINI


def _frames(cam, idx, image=None):
    return [Frame(cam, i, image, 0.0) for i in idx]


def test_precomputed_det_txt(tmp_path):
    det = tmp_path / "det.txt"
    det.write_text("2,-1,10,20,30,40,0.9,-1,-1,-1\n2,-1,0,0,5,5,0.05,-1,-1,-1\n1,-1,1,2,3,4,0.3\n")
    d1, d2, d3 = PrecomputedDetector(det).detect(_frames("c", [1, 2, 3]))
    np.testing.assert_allclose(d1.boxes, [[1, 2, 4, 6]])
    np.testing.assert_allclose(d2.boxes[0], [10, 20, 40, 60])
    np.testing.assert_allclose(d2.scores, [0.9, 0.05], rtol=1e-6)
    assert len(d3) == 0 and d2.classes.tolist() == [1, 1]
    assert len(PrecomputedDetector(det, min_score=0.1).detect(_frames("c", [2]))[0]) == 1


def test_precomputed_bad_row_names_file_and_line(tmp_path):
    det = tmp_path / "det.txt"
    det.write_text("1,-1,1,2,3,4,0.3\n1,-1,1,2\n")
    with pytest.raises(DataFormatError, match=r"det.txt:2: 4 fields, expected at least 7"):
        PrecomputedDetector(det)


def test_precomputed_real_mot17_public_detections():
    det = PrecomputedDetector({"MOT17-02-FRCNN": MOT17_MINI / "MOT17-02-FRCNN/det/det.txt"})
    (d,) = det.detect(_frames("MOT17-02-FRCNN", [1]))
    assert len(d) > 5 and (d.boxes[:, 2] > d.boxes[:, 0]).all()
    assert d.scores.min() >= 0 and d.scores.max() <= 1


def _gt_file(tmp_path):
    rows = []
    for f in range(1, 41):
        rows.append(f"{f},1,100,100,40,100,1,1,1.0")   # fully visible
        rows.append(f"{f},2,300,100,40,100,1,1,0.25")  # mostly occluded
        rows.append(f"{f},3,500,100,40,100,0,7,1.0")   # static person: never detected
    p = tmp_path / "gt.txt"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_gt_noise_detector_is_seeded_and_scores_fall_with_occlusion(tmp_path):
    gt = _gt_file(tmp_path)
    det = GroundTruthNoiseDetector(gt, seed=3, noise=NoiseModel(false_alarms=0.0))
    a = det.detect(_frames("c", range(1, 41)))
    b = [det.detect(_frames("c", [i]))[0] for i in range(1, 41)]  # other batching, same result
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
    other = GroundTruthNoiseDetector(gt, seed=4, noise=NoiseModel(false_alarms=0.0))
    assert not np.array_equal(a[0].boxes, other.detect(_frames("c", [1]))[0].boxes)
    vis_scores, occ_scores = [], []
    for d in a:
        assert (d.boxes[:, 0] < 450).all()  # the static person is not a target
        for box, s in zip(d.boxes, d.scores, strict=True):
            (vis_scores if box[0] < 200 else occ_scores).append(s)
    assert np.mean(vis_scores) > 0.85 and 0.1 < np.mean(occ_scores) < 0.5
    assert len(occ_scores) < len(vis_scores)  # occluded people are missed more often


class _Contract(torch.nn.Module):
    """Exported-detector contract: one box over the centre, score = mean intensity."""

    def forward(self, x):
        b, _, h, w = x.shape
        score = x.mean(dim=(1, 2, 3))
        box = torch.tensor([w / 4, h / 4, 3 * w / 4, 3 * h / 4], dtype=x.dtype)
        row = torch.cat([box.expand(b, 4), score[:, None], torch.ones(b, 1)], dim=1)
        pad = torch.zeros(b, 1, 6)
        return torch.cat([row[:, None, :], pad], dim=1)


def test_exported_torchscript_and_onnx_detectors_agree(tmp_path):
    model = _Contract().eval()
    ts_path = tmp_path / "det.pt"
    torch.jit.script(model).save(str(ts_path))
    onnx_path = tmp_path / "det.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 64),), str(onnx_path), dynamo=False,
                      input_names=["images"], output_names=["dets"],
                      dynamic_axes={"images": {0: "b"}, "dets": {0: "b"}})
    img = np.full((60, 120, 3), 128, np.uint8)
    frames = [Frame("a", 1, img, 0.0), Frame("b", 1, img // 2, 0.0)]
    out = {}
    for path in (ts_path, onnx_path):
        out[path.suffix] = ExportedDetector(path, input_size=(64, 32)).detect(frames)
    for d_ts, d_onnx in zip(out[".pt"], out[".onnx"], strict=True):
        np.testing.assert_allclose(d_ts.boxes, d_onnx.boxes, atol=1e-4)
        assert len(d_ts) == 1  # the padding row is ignored
    np.testing.assert_allclose(out[".pt"][0].boxes[0], [30, 15, 90, 45], atol=1e-3)
    assert out[".pt"][0].scores[0] == pytest.approx(128 / 255, abs=1e-3)
    assert out[".pt"][1].scores[0] < out[".pt"][0].scores[0]


def test_torchvision_detector_builds_without_download_and_keeps_low_scores():
    torch.manual_seed(0)
    det = TorchvisionDetector("ssdlite320_mobilenet_v3_large")
    assert det.model.score_thresh == pytest.approx(0.1)
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    (d,) = det.detect([Frame("a", 1, img, 0.0)])
    assert isinstance(d, Detections)
    assert (d.scores >= 0.1).all() and d.boxes.shape[1] == 4
    if len(d):
        assert d.boxes[:, 2].max() <= 128 + 1e-3 and d.boxes[:, 3].max() <= 96 + 1e-3
