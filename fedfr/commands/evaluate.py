"""``fedfr evaluate``: IJB-C 1:1 / 1:N and verification .bin sets for a trained checkpoint, and
the personalised protocols on a finished run's output folder.

    fedfr evaluate ijbc --root IJBC --checkpoint outputs/run/final_model.pt --out eval/ijbc
    fedfr evaluate bin --bin lfw.bin --bin agedb_30.bin --checkpoint final_model.pt --out eval/bin
    fedfr evaluate personal --run outputs/run --out eval/personal [--models global,local,personal]

Each writes CSV + markdown tables and, for 1:1 protocols, a ROC-curve PNG into ``--out``.
Features are cached under ``--cache-dir`` (model digest + data set + transform settings).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from fedfr.errors import ConfigError
from fedfr.runtime import configure_threads

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="final_model.pt of a run, a round or pre-trained checkpoint, or a "
                        "bare state_dict")
    p.add_argument("--model", default=None,
                   help="backbone name (default: from the run's report.json, else small_cnn)")
    p.add_argument("--embedding-size", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None, help="model input size")
    p.add_argument("--out", type=Path, required=True, help="folder for CSV / markdown / PNG")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache folder (default: <out>/feature-cache; '' disables)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--no-flip", action="store_true",
                   help="do not add the mirrored image's features")
    p.add_argument("--device", default="cpu")
    p.add_argument("--verify", action="store_true",
                   help="key the feature cache by a hash of every byte of the data (default: "
                        "size + mtime + sampled bytes per file; docs/evaluation.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    ij = sub.add_parser("ijbc", help="IJB-C 1:1 verification and 1:N identification")
    ij.add_argument("--root", type=Path, required=True,
                    help="IJB-C folder holding meta/ and loose_crop/")
    ij.add_argument("--no-detector-score", action="store_true",
                    help="do not weight image features by the detector score")
    ij.add_argument("--norm-images", action="store_true",
                    help="L2-normalise image features before pooling")
    ij.add_argument("--nearest-roc", action="store_true",
                    help="also report insightface's nearest-ROC-point TAR (tar_roc@...)")
    ij.add_argument("--no-1n", action="store_true", help="skip 1:N even if the lists exist")
    ij.add_argument("--workers", type=int, default=2, help="threads decoding / aligning crops")
    ij.add_argument("--skip-bad-images", action="store_true",
                    help="leave unreadable crops out of their templates instead of stopping")
    _common(ij)
    b = sub.add_parser("bin", help="verification .bin sets (LFW, CFP-FP, AgeDB-30, ...)")
    b.add_argument("--bin", type=Path, action="append", required=True,
                   help="a .bin file (repeat for several sets)")
    b.add_argument("--folds", type=int, default=10)
    _common(b)
    from fedfr.commands import evaluate_reid

    evaluate_reid.add_parser(sub)
    pe = sub.add_parser("personal", help="personalised 1:1 and 1:N of a finished run (Theta_g, "
                                         "Theta_l, [Theta_l, Pi_l]; Fine-tune / KD on request)")
    pe.add_argument("--run", type=Path, required=True,
                    help="the run's output folder (report.json, final_model.pt, client states)")
    pe.add_argument("--state-dir", type=Path, default=None,
                    help="where the clients kept their states (default: the run's state-dir, "
                         "else <run>/client-state)")
    pe.add_argument("--models", default="global,local,personal",
                    help="comma-separated: global, local, personal, finetune, kd")
    pe.add_argument("--bootstrap", type=int, default=500,
                    help="bootstrap replicates (clients x identities) of the 95%% intervals")
    pe.add_argument("--out", type=Path, required=True, help="folder for CSV / markdown")


def _cache(args: argparse.Namespace):
    from fedfr.face.evaluation.cache import FeatureCache

    if args.cache_dir is not None and str(args.cache_dir) == "":
        return FeatureCache(None)
    return FeatureCache(args.cache_dir or args.out / "feature-cache")


def _run_ijbc(args: argparse.Namespace, model) -> None:
    from fedfr.face.evaluation.ijbc import evaluate_ijbc
    from fedfr.face.evaluation.outputs import plot_roc, write_table

    res = evaluate_ijbc(model, args.root, cache=_cache(args), flip=not args.no_flip,
                        detector_score=not args.no_detector_score, norm_images=args.norm_images,
                        nearest_roc=args.nearest_roc, one_to_n=False if args.no_1n else None,
                        batch_size=args.batch_size, device=args.device,
                        workers=args.workers, skip_bad_images=args.skip_bad_images)
    out = args.out
    settings = (f"flip={not args.no_flip}, detector-score={not args.no_detector_score}, "
                f"norm-images={args.norm_images}")
    md = [f"# IJB-C evaluation of {args.checkpoint}", "", f"Settings: {settings}.", ""]
    md.append(write_table(
        [{"protocol": "1:1", **res.verification}], out / "ijbc_1to1.csv", None,
        "IJB-C 1:1 verification (TAR @ FAR)",
        ["tar@: exact-threshold rule (threshold = (k+1)-th largest impostor, k = "
         "floor(FAR x #impostors); accept score > threshold)",
         "tar_roc@: insightface's nearest ROC point (only with --nearest-roc)",
         "n/a: FAR x #impostors < 1"]))
    if res.identification is not None:
        rows = [{"protocol": name, **vals} for name, vals in res.identification.items()]
        md.append(write_table(
            rows, out / "ijbc_1toN.csv", None, "IJB-C 1:N identification",
            ["insightface-closed-G1+G2: galleries merged, every probe has a mate (closed set); "
             "TPIR@FPIR f = probes whose mate score exceeds the ceil(f x #probes)-th largest "
             "non-mate score (insightface's rule)",
             "nist-open-G1/G2: NIST open-set, one gallery at a time, probes of the other "
             "gallery's subjects are non-mated; FPIR over non-mated probes (exact-threshold "
             "rule), TPIR = rank-1 correct and above threshold; mean = average of G1 and G2"]))
    (out / "ijbc.md").write_text("\n".join(md))
    plot_roc({"IJB-C 1:1": (res.scores, res.labels)}, out / "ijbc_roc.png",
             f"IJB-C 1:1 ROC ({args.checkpoint.name})")
    log.info("IJB-C results written to %s:\n%s", out, "\n".join(md))


def _run_bin(args: argparse.Namespace, model) -> None:
    from fedfr.face.evaluation.binsets import BIN_FARS, evaluate_bin
    from fedfr.face.evaluation.outputs import plot_roc, write_table

    cache = _cache(args)
    rows, curves = [], {}
    for path in args.bin:
        t0 = time.perf_counter()
        metrics, scores, issame = evaluate_bin(model, path, cache=cache, flip=not args.no_flip,
                                               batch_size=args.batch_size, fars=BIN_FARS,
                                               device=args.device, n_folds=args.folds)
        rows.append({"set": path.stem, **metrics})
        curves[path.stem] = (scores, issame.astype(int))
        log.info("%s: accuracy %.4f (%.1f s)", path.stem, metrics["accuracy"],
                 time.perf_counter() - t0)
    text = write_table(rows, args.out / "bin.csv", None, "Verification sets",
                       [f"accuracy: {args.folds}-fold, threshold chosen on the other folds",
                        "tar@: exact-threshold rule over the different-identity pairs"])
    (args.out / "bin.md").write_text(f"# Verification .bin sets: {args.checkpoint}\n\n" + text)
    plot_roc(curves, args.out / "bin_roc.png", f"Verification ROC ({args.checkpoint.name})")
    log.info("results written to %s:\n%s", args.out, text)


def _run_personal(args: argparse.Namespace) -> None:
    from fedfr.face.evaluation.personal import evaluate_run, load_run, personal_report

    models = tuple(m for m in args.models.split(",") if m)
    run = load_run(args.run, args.state_dir)
    ev = evaluate_run(run, models)
    text = personal_report(ev, args.out, num_samples=args.bootstrap,
                           title=f"Personalised protocols of {args.run}")
    log.info("results written to %s:\n%s", args.out, text)


def main(args: argparse.Namespace) -> int:
    from fedfr.face.evaluation.outputs import load_model

    configure_threads()
    if args.protocol == "reid":
        from fedfr.commands import evaluate_reid

        return evaluate_reid.main(args)
    if args.protocol == "personal":
        args.out.mkdir(parents=True, exist_ok=True)
        _run_personal(args)
        return 0
    if args.verify:
        os.environ["FEDFR_VERIFY_DIGESTS"] = "1"  # read by fedfr.digest
    model = load_model(args.checkpoint, args.model, args.embedding_size, args.image_size)
    try:
        model.to(args.device)
    except (RuntimeError, AssertionError) as exc:  # unknown device string, no CUDA driver, ...
        raise ConfigError(f"--device {args.device!r}: cannot use it ({str(exc).splitlines()[0]}); "
                          "expected cpu, cuda or cuda:N on a machine that has it") from exc
    args.out.mkdir(parents=True, exist_ok=True)
    if args.protocol == "ijbc":
        _run_ijbc(args, model)
    else:
        _run_bin(args, model)
    return 0
