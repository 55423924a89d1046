"""User errors reach the user as one line naming the key/file/record, exit status 2 (issue 11,
case 6): a table of bad configs, paths, data files, checkpoints and arguments run through
``python -m server.inprocess`` and the ``fedfr`` command, in-process (two end-to-end checks
run a subprocess).

The ``kind`` column says what each case guards against:

- ``here``: printed a Python traceback on this branch's base (main at e5fd606, after issue 11's
  first part); fixed by this change.
- ``i11``: printed a traceback on main before issue 11 (5d61c41); one line since issue 11's first
  part (``fedfr.errors.run_entry_point``); kept here as a guard.
- ``i11-exit1``: one line but exit status 1 on main before issue 11; a guard of exit status 2.
- ``detail``: one line on e5fd606, but torch's header line (``Error(s) in loading state_dict
  for X:``) instead of what did not fit; now the first mismatch.
- ``guard``: already one line and exit 2 on e5fd606; kept from regressing.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedfr import cli
from fedfr.checkpoint import save_pretrained, save_round
from fedfr.config import format_run_config
from fedfr.face.models import get_model
from server import inprocess
from tests.ijbc_fixtures import write_bin

ROOT = Path(__file__).resolve().parents[1]

# a federation that fits a 5-identity folder (2 public, 2 clients x 1, 1 generic)
SMALL = {"num-public-ids": 2, "num-clients": 2, "ids-per-client": 1, "train-per-id": 1,
         "test-per-id": 1, "num-generic-ids": 1, "image-size": 32, "embedding-size": 16,
         "min-train-nodes": 2, "num-server-rounds": 1, "pretrain-epochs": 1}


# --- inputs built in tmp_path -------------------------------------------------------------------
def faces(tmp: Path, ids: int = 5, per_id: int = 2, corrupt: bool = False) -> Path:
    """root/<id>/<n>.png: ``ids`` identities of ``per_id`` random 8x8 RGB images (with
    ``corrupt`` one more file per identity, ``bad.png``, that is not an image)."""
    root = tmp / "faces"
    rng = np.random.default_rng(0)
    for i in range(ids):
        d = root / f"id{i}"
        d.mkdir(parents=True)
        for j in range(per_id):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{j}.png")
        if corrupt:
            (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def pretrained(tmp: Path, embedding: int = 16, k_g: int = 2, phi=None) -> Path:
    """A pre-trained checkpoint of small_cnn (d = ``embedding``) with Phi (k_g, 16)."""
    model = get_model("small_cnn", embedding_size=embedding, input_size=32)
    path = tmp / f"pre-{embedding}-{k_g}.pt"
    save_pretrained(path, model.state_dict(), torch.zeros(k_g, 16) if phi is None else phi, {})
    return path


def text_file(tmp: Path, name: str, text: str = "not what was expected\n") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def folder_cfg(tmp: Path, **extra) -> dict:
    return {**SMALL, "dataset": "folder", "data-root": str(faces(tmp)), **extra}


def run_cfg(tmp: Path, values: dict) -> list[str]:
    """server.inprocess argv for ``values`` over output/cache dirs in tmp."""
    base = {"output-dir": str(tmp / "out"), "cache-dir": str(tmp / "cache")}
    return ["--run-config", format_run_config({**base, **values})]


def ckpt_other_run(tmp: Path) -> list[str]:
    """A folder run whose output-dir holds round checkpoints of another config."""
    cfg = folder_cfg(tmp, **{"pretrained-path": str(pretrained(tmp))})
    save_round(tmp / "out" / "checkpoints", 1, {"w": torch.zeros(1)},
               {"config-digest": "0123456789abcdef"})
    return run_cfg(tmp, cfg)


def ckpt_no_arrays(tmp: Path) -> list[str]:
    cfg = folder_cfg(tmp, **{"pretrained-path": str(pretrained(tmp))})
    (tmp / "out" / "checkpoints").mkdir(parents=True)
    torch.save({"round": 1}, tmp / "out" / "checkpoints" / "round-0001.pt")
    return run_cfg(tmp, cfg)


def pickled_bin(tmp: Path, obj) -> Path:
    path = tmp / "set.bin"
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def checkpoint_file(tmp: Path) -> Path:
    path = tmp / "final_model.pt"
    torch.save(get_model("small_cnn", embedding_size=16, input_size=32).state_dict(), path)
    return path


def evaluate_bin(tmp: Path, *extra: str, bin_path: Path | None = None,
                 ckpt: Path | None = None) -> list[str]:
    b = bin_path or tmp / "lfw.bin"
    if bin_path is None:
        write_bin(b, pairs=4)
    c = ckpt or checkpoint_file(tmp)
    return ["evaluate", "bin", "--checkpoint", str(c), "--model", "small_cnn",
            "--embedding-size", "16", "--image-size", "32", "--out", str(tmp / "ev"),
            "--bin", str(b), *extra]


def prune_tv(tmp: Path, *extra: str) -> list[str]:
    return ["prune", "--torchvision", "resnet18", "--num-classes", "4", "--input-size", "32",
            "--method", "uniform", "--schedule", "none", "--out", str(tmp / "pruned"), *extra]


def split_manifest(tmp: Path, doc) -> Path:
    return text_file(tmp, "split.json", json.dumps(doc))


# --- the table ----------------------------------------------------------------------------------
# (id, entry point, argv builder, substrings the one line must hold, kind)
Case = tuple[str, str, Callable[[Path], list[str]], tuple[str, ...], str]
CASES: list[Case] = [
    # run config: keys, types, ranges, combinations
    ("typo-key", "inprocess", lambda t: ["--run-config", "num-server-round=3"],
     ("'num-server-round'", "did you mean 'num-server-rounds'"), "i11"),
    ("int-as-text", "inprocess", lambda t: ["--run-config", "num-clients='two'"],
     ("'num-clients'", "expected an integer", "'two'"), "i11"),
    ("bool-as-text", "inprocess", lambda t: ["--run-config", "dfc='maybe'"],
     ("'dfc'", "expected true or false"), "i11"),
    ("float-as-text", "inprocess", lambda t: ["--run-config", "lr='fast'"],
     ("'lr'", "expected a number"), "i11"),
    ("not-key-value", "inprocess", lambda t: ["--run-config", "num-server-rounds"],
     ("--run-config", "expected key=value"), "i11-exit1"),
    ("unquoted-string", "inprocess", lambda t: ["--run-config", "dataset=folder"],
     ("dataset", "not a TOML value"), "i11-exit1"),
    ("unknown-strategy", "inprocess", lambda t: ["--run-config", "strategy='fedprox'"],
     ("'strategy'", "fedprox", "expected one of"), "i11"),
    ("unknown-dataset", "inprocess", lambda t: ["--run-config", "dataset='lfw'"],
     ("'dataset'", "lfw"), "i11"),
    ("unknown-model", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "model": "resnet9"}), ("model", "resnet9"), "i11"),
    ("bad-eval-model", "inprocess", lambda t: ["--run-config", "final-eval-models='global,kd2'"],
     ("'final-eval-models'", "kd2"), "i11"),
    ("zero-image-size", "inprocess", lambda t: ["--run-config", "image-size=0"],
     ("'image-size'", "> 0"), "i11"),
    ("threshold-range", "inprocess", lambda t: ["--run-config", "hn-threshold=2.0"],
     ("'hn-threshold'", "[-1, 1]"), "i11"),
    ("min-nodes>clients", "inprocess",
     lambda t: ["--run-config", "num-clients=1 min-train-nodes=2"],
     ("'min-train-nodes'", "num-clients"), "i11"),
    ("synthetic-too-few", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "synthetic-images-per-id": 1}),
     ("'synthetic-images-per-id'", "train-per-id + test-per-id"), "i11"),
    # data paths and data files
    ("folder-no-root", "inprocess", lambda t: ["--run-config", "dataset='folder'"],
     ("'data-root'", "required"), "i11"),
    ("relative-root", "inprocess",
     lambda t: ["--run-config", "dataset='folder' data-root='faces'"],
     ("'data-root'", "absolute path"), "i11"),
    ("missing-root", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "dataset": "folder", "data-root": str(t / "none")}),
     ("none", "does not exist"), "i11"),
    ("root-is-file", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "dataset": "folder",
                           "data-root": str(text_file(t, "faces.txt"))}),
     ("faces.txt", "not a folder"), "i11"),
    ("folder-too-small", "inprocess",
     lambda t: run_cfg(t, {"dataset": "folder", "data-root": str(faces(t)),
                           "num-clients": 2}), ("identities", "faces"), "i11"),
    ("corrupt-image", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "dataset": "folder",
                           "data-root": str(faces(t, corrupt=True))}),
     ("bad.png", "cannot decode image"), "i11"),
    ("recordio-missing", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "dataset": "recordio", "data-root": str(t)}),
     (".rec",), "i11"),
    ("manifest-missing", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"split-manifest": str(t / "split.json")})),
     ("'split-manifest'", "split.json", "not found"), "i11"),
    ("manifest-not-json", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"split-manifest": str(text_file(t, "split.json"))})),
     ("split.json", "split manifest"), "i11"),
    ("manifest-a-list", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"split-manifest": str(split_manifest(t, [1, 2]))})),
     ("split.json",), "i11"),
    ("manifest-bad-record", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"split-manifest": str(split_manifest(
         t, {"version": 1, "spec": {}, "public": "x"}))})),
     ("split.json",), "i11"),
    ("recordio-bad-index-line", "inprocess",
     lambda t: (text_file(t, "train.rec", "zz"), run_cfg(t, {**SMALL, "dataset": "recordio",
               "data-root": str(text_file(t, "train.idx", "1\tx\n").parent)}))[1],
     ("train.idx, line 1", "key<TAB>offset"), "guard"),
    ("recordio-bad-magic", "inprocess",
     lambda t: (text_file(t, "train.rec", "z" * 20), run_cfg(t, {**SMALL, "dataset": "recordio",
               "data-root": str(text_file(t, "train.idx", "0\t0\n1\t8\n").parent)}))[1],
     ("train.rec", "bad magic"), "guard"),
    ("cache-dir-is-file", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "cache-dir": str(text_file(t, "c.txt"))}),
     ("c.txt",), "guard"),
    ("image-size-not-multiple", "inprocess", lambda t: run_cfg(t, {**SMALL, "image-size": 20}),
     ("small_cnn", "multiple of 16", "20"), "guard"),
    # checkpoints
    ("pretrained-garbage", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"pretrained-path": str(text_file(t, "pre.pt"))})),
     ("pre.pt", "not a readable fedfr checkpoint"), "i11"),
    ("pretrained-other-model", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"pretrained-path": str(pretrained(t, 32, 2))})),
     ("pre-32-2.pt", "does not fit model 'small_cnn'", "size mismatch for fc.weight"),
     "detail"),
    ("pretrained-phi-shape", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"pretrained-path": str(pretrained(t, 16, 7))})),
     ("pre-16-7.pt", "Phi has shape (7, 16)"), "i11"),
    ("pretrained-phi-type", "inprocess",
     lambda t: run_cfg(t, folder_cfg(t, **{"pretrained-path": str(pretrained(
         t, 16, 2, phi={"w": torch.zeros(1)}))})), ("pre-16-2.pt", "'phi'"), "here"),
    ("resume-other-config", "inprocess", ckpt_other_run,
     ("checkpoints", "other settings"), "i11"),
    ("resume-bad-round-file", "inprocess", ckpt_no_arrays,
     ("round-0001.pt", "arrays"), "here"),
    ("output-dir-is-file", "inprocess",
     lambda t: run_cfg(t, {**SMALL, "output-dir": str(text_file(t, "out.txt"))}),
     ("out.txt",), "i11"),
    # fedfr evaluate
    ("eval-missing-checkpoint", "cli",
     lambda t: evaluate_bin(t, ckpt=t / "none.pt"), ("none.pt", "does not exist"), "i11"),
    ("eval-garbage-checkpoint", "cli",
     lambda t: evaluate_bin(t, ckpt=text_file(t, "final.pt")),
     ("final.pt", "not a readable fedfr checkpoint"), "i11"),
    ("eval-wrong-model", "cli",
     lambda t: evaluate_bin(t, "--model", "mobilefacenet"),
     ("final_model.pt", "do not fit", "Missing key(s) in state_dict"), "detail"),
    ("eval-unknown-model", "cli",
     lambda t: evaluate_bin(t, "--model", "resnet9"), ("model", "resnet9"), "i11"),
    ("eval-missing-bin", "cli",
     lambda t: evaluate_bin(t, bin_path=t / "agedb.bin"), ("agedb.bin", "does not exist"),
     "i11"),
    ("eval-garbage-bin", "cli",
     lambda t: evaluate_bin(t, bin_path=text_file(t, "cfp.bin")), ("cfp.bin", "pickled"),
     "i11"),
    ("eval-bin-count", "cli",
     lambda t: evaluate_bin(t, bin_path=pickled_bin(t, ([b"a", b"b", b"c"], [True]))),
     ("set.bin", "3 images for 1 pairs"), "i11"),
    ("eval-bin-folds", "cli", lambda t: evaluate_bin(t, "--folds", "1"),
     ("--folds", "1"), "here"),
    ("eval-batch-size", "cli", lambda t: evaluate_bin(t, "--batch-size", "0"),
     ("--batch-size", "0"), "here"),
    ("eval-folds-exceed-pairs", "cli", lambda t: evaluate_bin(t),  # 4 pairs, --folds 10
     ("--folds", "2..#pairs (4)", "10"), "here"),
    ("eval-unknown-device", "cli", lambda t: evaluate_bin(t, "--device", "gpu", "--folds", "2"),
     ("--device 'gpu'",), "here"),
    ("eval-ijbc-missing-root", "cli",
     lambda t: ["evaluate", "ijbc", "--checkpoint", str(checkpoint_file(t)), "--model",
                "small_cnn", "--embedding-size", "16", "--image-size", "32", "--out",
                str(t / "ev"), "--root", str(t / "IJBC")], ("IJBC",), "i11"),
    # fedfr prune
    ("prune-no-target", "cli", lambda t: prune_tv(t), ("--flops",), "i11"),
    ("prune-flops-range", "cli", lambda t: prune_tv(t, "--flops", "1.5"),
     ("flops", "1.5", "(0, 1]"), "here"),
    ("prune-unknown-torchvision", "cli",
     lambda t: ["prune", "--torchvision", "resnet9", "--flops", "0.5", "--out", str(t / "p")],
     ("--torchvision", "resnet9"), "i11"),
    ("prune-keep-unknown-layer", "cli",
     lambda t: prune_tv(t, "--flops", "0.5", "--keep", "no.such.layer"),
     ("no.such.layer",), "here"),
    ("prune-needs-data", "cli",
     lambda t: ["prune", "--torchvision", "resnet18", "--method", "caie", "--flops", "0.5",
                "--out", str(t / "p")], ("--data-root",), "i11"),
    ("prune-data-too-small", "cli",
     lambda t: ["prune", "--torchvision", "resnet18", "--method", "taylor", "--flops", "0.5",
                "--data-root", str(faces(t)), "--input-size", "32", "--train-per-class", "1",
                "--out", str(t / "p")], ("--batch-size",), "here"),
    ("prune-face-no-checkpoint", "cli",
     lambda t: ["prune", "--flops", "0.5", "--out", str(t / "p")], ("--checkpoint",), "i11"),
    ("prune-face-garbage-checkpoint", "cli",
     lambda t: ["prune", "--flops", "0.5", "--checkpoint", str(text_file(t, "m.pt")),
                "--out", str(t / "p")], ("m.pt",), "i11"),
    ("prune-tv-wrong-checkpoint", "cli",
     lambda t: prune_tv(t, "--flops", "0.5", "--checkpoint", str(checkpoint_file(t))),
     ("final_model.pt", "does not fit resnet18", "Missing key(s) in state_dict"), "detail"),
    # fedfr split / export
    ("split-missing-root", "cli",
     lambda t: ["split", "--dataset", "folder", "--data-root", str(t / "none"), "--out",
                str(t / "s.json")], ("none", "does not exist"), "i11"),
    ("split-too-small", "cli",
     lambda t: ["split", "--dataset", "folder", "--data-root", str(faces(t)), "--out",
                str(t / "s.json")], ("faces",), "i11"),
    ("split-out-is-folder", "cli",
     lambda t: ["split", "--dataset", "folder", "--data-root", str(faces(t)), "--out", str(t),
                "--num-clients", "1", "--ids-per-client", "1", "--num-public-ids", "1",
                "--client-pool-ids", "1", "--train-per-id", "1", "--test-per-id", "1",
                "--min-images", "2", "--num-generic-ids", "0"],
     (": is a folder; expected the path of the split manifest",), "here"),
    ("export-missing-manifest", "cli",
     lambda t: ["export", "--out", str(t / "x"), "--manifest", str(t / "m.json")],
     ("m.json", "not found"), "i11-exit1"),
    ("export-bad-config-file", "cli",
     lambda t: ["export", "--out", str(t / "x"), "--config", str(text_file(t, "run.toml",
                                                                           "a = = 1"))],
     ("run.toml", "cannot read the run config"), "i11-exit1"),
    ("export-no-clients", "cli", lambda t: ["export", "--out", str(t / "x")],
     ("'num-clients'",), "i11-exit1"),
    ("export-bad-client-list", "cli",
     lambda t: ["export", "--out", str(t / "x"), "--run-config",
                format_run_config(folder_cfg(t)), "--clients", "0,b"],
     ("--clients", "'b'"), "here"),
    ("export-client-out-of-range", "cli",
     lambda t: ["export", "--out", str(t / "x"), "--run-config",
                format_run_config(folder_cfg(t)), "--clients", "5"],
     ("--clients", "5"), "i11-exit1"),
]


def _call(entry: str, argv: list[str]) -> int:
    return inprocess.main(argv) if entry == "inprocess" else cli.main(argv)


@pytest.mark.parametrize("case_id, entry, build, expected, kind", CASES,
                         ids=[c[0] for c in CASES])
def test_user_error_is_one_line_exit_2(case_id: str, entry: str, build, expected, kind,
                                       tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FEDFR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEDFR_DEBUG", raising=False)
    argv = build(tmp_path)
    capsys.readouterr()
    status = _call(entry, argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert status == 2, err
    assert len(lines) == 1, err
    prog = "server.inprocess" if entry == "inprocess" else f"fedfr {argv[0]}"
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_bad_cli_argument_is_argparse_usage_exit_2(capsys) -> None:
    """guard: argparse's own refusal (usage + one error line naming the option), exit 2."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", "--flops", "half", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("argument --flops: invalid float value: 'half'")


def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    """guard: --debug keeps the traceback of a user error, and still exits 2."""
    argv = evaluate_bin(tmp_path, "--folds", "1")
    assert cli.main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("fedfr evaluate: error")


@pytest.mark.parametrize("argv, expected", [
    pytest.param([sys.executable, "-m", "server.inprocess", "--run-config",
                  "strategy='fedprox'"], "server.inprocess: error: config 'strategy'",
                 marks=pytest.mark.slow),  # ~6 s: imports flwr and torch
    ([sys.executable, "-m", "fedfr", "split", "--dataset", "folder", "--data-root", "/no/such",
      "--out", "s.json"], "fedfr split: error: /no/such"),
])
def test_end_to_end_subprocess(argv: list[str], expected: str, tmp_path: Path) -> None:
    """i11: the real processes print one line on stderr and exit 2 (tracebacks before)."""
    env = {**os.environ, "FEDFR_HOME": str(tmp_path), "FEDFR_DEBUG": ""}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ": error: " in ln or "Traceback" in ln]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
