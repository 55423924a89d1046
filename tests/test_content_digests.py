"""No cache serves a stale result: digests cover file contents (fedfr/digest.py), a replaced
file invalidates what was computed from it, a missing file is named, meta readers name the
line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ijbc_fixtures import jpeg_bytes, orl_face, write_bin, write_ijbc
from PIL import Image

from fedfr.cli import main
from fedfr.config import resolve
from fedfr.digest import BLOCK, SAMPLE_WHOLE, file_fingerprint, files_fingerprint
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.data.folder import ImageFolderSource
from fedfr.face.data.split import SplitSpec, make_split
from fedfr.face.evaluation.ijbc import read_ijbc_meta
from fedfr.face.models import get_model
from fedfr.face.training.pretrain import pretrained_checkpoint_path


def _faces(root: Path, ids: int = 6, per_id: int = 3) -> None:
    rng = np.random.default_rng(0)
    for i in range(ids):
        (root / f"s{i}").mkdir(parents=True)
        for k in range(per_id):
            img = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(img).save(root / f"s{i}" / f"{k}.png")


def _replace(path: Path, data: bytes) -> None:
    """Replace a file's content, keeping its name, size and modification time."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_folder_source_digest_covers_the_bytes(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    _faces(root)
    before = ImageFolderSource(root).digest()
    target = root / "s2" / "1.png"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # same name, size and mtime, one byte differs
    _replace(target, bytes(data))
    after = ImageFolderSource(root).digest()
    assert after != before
    # the split digest, and so the key of the cached pre-trained model, follow the content
    spec = SplitSpec(num_public_ids=2, num_clients=2, ids_per_client=2, train_per_id=2,
                     test_per_id=1, num_generic_ids=0)
    _faces(tmp_path / "copy")
    a = make_split(ImageFolderSource(tmp_path / "copy"), spec)
    b = make_split(ImageFolderSource(root), spec)
    cfg = resolve({"dataset": "folder", "data-root": str(root)})
    assert pretrained_checkpoint_path(cfg, a.digest()) != pretrained_checkpoint_path(
        cfg, b.digest())


def test_fingerprint_modes(tmp_path: Path, monkeypatch) -> None:
    big = tmp_path / "big.rec"
    data = bytearray(np.random.default_rng(1).integers(0, 255, SAMPLE_WHOLE + 5 * BLOCK,
                                                       dtype=np.uint8).tobytes())
    big.write_bytes(bytes(data))
    local, portable, verify = (file_fingerprint(big, m) for m in ("local", "portable",
                                                                   "verify"))
    # a byte outside the sampled blocks, same size and mtime: only verify sees it
    data[BLOCK + 10] ^= 0xFF
    _replace(big, bytes(data))
    assert file_fingerprint(big, "portable") == portable
    assert file_fingerprint(big, "local") == local
    assert file_fingerprint(big, "verify") != verify
    monkeypatch.setenv("FEDFR_VERIFY_DIGESTS", "1")  # what --verify sets
    assert file_fingerprint(big, "local") == file_fingerprint(big, "verify")
    monkeypatch.delenv("FEDFR_VERIFY_DIGESTS")
    # a rewrite with a new mtime changes the local fingerprint, not the portable one
    os.utime(big, ns=(1, 10**18))
    assert file_fingerprint(big, "local") != local
    assert file_fingerprint(big, "portable") == portable
    with pytest.raises(DataFormatError, match=f"{tmp_path / 'gone.png'}: image does not exist"):
        files_fingerprint([big, tmp_path / "gone.png"], what="image")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(1)
    model = get_model("small_cnn", embedding_size=16, input_size=32)
    torch.save({f"backbone.{k}": v for k, v in model.state_dict().items()},
               run / "final_model.pt")
    (run / "report.json").write_text(json.dumps(
        {"config": {"model": "small_cnn", "embedding-size": 16, "image-size": 32}}))
    return run / "final_model.pt"


def test_ijbc_recropped_images_are_not_served_from_the_cache(tmp_path: Path, checkpoint: Path,
                                                             capsys) -> None:
    root = tmp_path / "IJBC"
    write_ijbc(root, subjects=4, with_1n=False)
    out = tmp_path / "eval"
    args = ["evaluate", "ijbc", "--root", str(root), "--checkpoint", str(checkpoint),
            "--out", str(out), "--workers", "0"]
    assert main(args) == 0
    first = pd.read_csv(out / "ijbc_1to1.csv")
    # re-crop: every crop replaced by another face, meta files unchanged
    rng = np.random.default_rng(5)
    for p in sorted((root / "loose_crop").iterdir()):
        canvas = np.zeros((150, 150, 3), np.uint8)
        canvas[:112, :112] = orl_face(int(rng.integers(1, 41)), int(rng.integers(1, 11)))
        p.write_bytes(jpeg_bytes(canvas))
    assert main(args) == 0
    assert len(list((out / "feature-cache").glob("*.npy"))) == 2  # a new entry, not a hit
    second = pd.read_csv(out / "ijbc_1to1.csv")
    fresh = tmp_path / "fresh"
    assert main([*args[:-4], "--out", str(fresh), "--workers", "0"]) == 0
    pd.testing.assert_frame_equal(second, pd.read_csv(fresh / "ijbc_1to1.csv"))
    assert not first.equals(second)
    # a missing crop with the same --out: an error naming it, exit 2
    missing = sorted((root / "loose_crop").iterdir())[3]
    missing.unlink()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"fedfr evaluate: error: {missing}: IJB-C crop listed in the meta files "
                       "does not exist")


def test_ijbc_short_landmark_line_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "IJBC"
    write_ijbc(root, subjects=2, with_1n=False)
    lmk = root / "meta" / "ijbc_name_5pts_score.txt"
    lines = lmk.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:7])  # image name + 6 of 11 numbers
    lmk.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"{lmk}: line 3: 7 fields, expected 12"):
        read_ijbc_meta(root)
    lines[2] = lines[3].split()[0] + " 1 2 3 4 5 6 7 8 9 10 nan"
    lmk.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"{lmk}: line 3: expected 11 finite numbers"):
        read_ijbc_meta(root)


def test_missing_bin_and_checkpoint_are_named(tmp_path: Path, checkpoint: Path,
                                              capsys) -> None:
    gone = tmp_path / "lfw.bin"
    assert main(["evaluate", "bin", "--bin", str(gone), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fedfr evaluate: error: {gone}: verification .bin file does not exist")
    write_bin(gone, pairs=4)
    no_ckpt = tmp_path / "run" / "nope.pt"
    assert main(["evaluate", "bin", "--bin", str(gone), "--checkpoint", str(no_ckpt),
                 "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fedfr evaluate: error: {no_ckpt}: checkpoint does not exist")


def test_resume_refuses_another_pretrained_model(tiny_config: dict, tmp_path: Path) -> None:
    from server.inprocess import run_inprocess

    pre = tmp_path / "pre.pt"
    conf = {**tiny_config, "num-server-rounds": 1, "pretrained-path": str(pre),
            "pretrain-epochs": 0}
    run_inprocess(conf)  # pre-trains into pre.pt, checkpoints round 1
    ckpt = torch.load(pre, weights_only=True)
    ckpt["phi"] = ckpt["phi"] + 0.01  # the same file name, another model
    torch.save(ckpt, pre)
    with pytest.raises(ConfigError, match="checkpoints start from another pre-trained model"):
        run_inprocess({**conf, "num-server-rounds": 2})
