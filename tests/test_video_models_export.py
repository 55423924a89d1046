"""Export of video re-ID models to TorchScript and ONNX with a pre/post-processing sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.models.video import build_video_model
from fedfr.reid.models.video.export import export_video_model, load_exported_video_model


def _model(name="ste_nvan", **kw):
    torch.manual_seed(0)
    model = build_video_model(name, backbone="small_reid", input_size=(64, 32), stripes=4,
                              clip_len=4, **kw)
    for m in model.modules():  # non-zero attention branches, so that they are exported too
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.normal_(m.weight, 0.0, 0.5)
    return model.eval()


def test_ste_nvan_exports_to_torchscript_with_a_sidecar(tmp_path):
    model = _model()
    paths = export_video_model(model, tmp_path, formats=("torchscript",), normalize=True)
    side = json.loads(paths["sidecar"].read_text())
    assert side["files"] == {"torchscript": "ste_nvan.ts"}
    assert side["input"]["clip_len"] == 4 and (side["input"]["height"],
                                               side["input"]["width"]) == (64, 32)
    assert side["input"]["mean"] == [0.485, 0.456, 0.406] and side["input"]["layout"] == \
        "B,T,3,H,W"
    assert side["output"]["l2_normalized"] is True and side["output"]["dim"] == 192
    assert side["model"]["name"] == "ste_nvan" and side["model"]["stripes"] == 4
    assert all(v <= 1e-4 for v in side["checks"].values())
    x = torch.randn(3, 4, 3, 64, 32)  # another batch size than the export's
    expected = model.embed(x, normalize=True)
    ts = torch.jit.load(str(paths["torchscript"]))(x)
    torch.testing.assert_close(ts, expected, atol=1e-4, rtol=0)
    loaded = load_exported_video_model(paths["sidecar"])
    assert loaded.backend == "torchscript"
    torch.testing.assert_close(loaded(x), expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"expected clips \(B, 4, 3, 64, 32\)"):
        loaded(torch.zeros(1, 8, 3, 64, 32))
    with pytest.raises(ConfigError, match="no 'onnx' file"):
        load_exported_video_model(paths["sidecar"], backend="onnx")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataFormatError, match="bad.json"):
        load_exported_video_model(tmp_path / "bad.json")


def test_ste_nvan_exports_to_onnx_matching_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _model(temporal_group=2)
    paths = export_video_model(model, tmp_path, formats=("onnx",))
    side = json.loads(paths["sidecar"].read_text())
    assert side["files"] == {"onnx": "ste_nvan.onnx"} and side["output"]["l2_normalized"] is False
    assert side["checks"]["onnx_max_abs_diff"] <= 1e-4 and side["opset"] == 17
    x = torch.randn(3, 4, 3, 64, 32)
    expected = model.embed(x)
    sess = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    got = sess.run(["feature"], {"clip": x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=0)
    loaded = load_exported_video_model(paths["sidecar"])
    assert loaded.backend == "onnx"
    np.testing.assert_allclose(loaded(x).numpy(), expected.numpy(), atol=1e-4, rtol=0)


def test_export_rejects_unknown_formats(tmp_path):
    with pytest.raises(ConfigError, match="formats"):
        export_video_model(_model("baseline"), tmp_path, formats=("tflite",))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nvan", "cf_aan"])
def test_nvan_and_cf_aan_export(tmp_path, name):
    pytest.importorskip("onnxruntime")
    kw = {"scales": 2} if name == "cf_aan" else {}
    paths = export_video_model(_model(name, **kw), tmp_path)
    side = json.loads(paths["sidecar"].read_text())
    assert set(side["files"]) == {"torchscript", "onnx"} and max(side["checks"].values()) <= 1e-4
