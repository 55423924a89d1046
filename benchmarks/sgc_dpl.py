"""SGC-DPL (dissertation Ch. 3): Table 3.1 / 3.2 / 3.4 layouts and Fig. 3.5's per-iteration
curves, plus the affinity-propagation scale benchmark.

``tables`` (the default command): on the synthetic default, ``synth-market``'s training
identities are split into labelled / unlabelled parts (seeded manifests under
``<out>/manifests``) and every row of Table 3.2 is trained, from the same backbone pre-trained
on another labelled synthetic domain (the stand-in for the thesis's ImageNet start), and
tested on its query / gallery; ``--paper`` reads Market-1501 / DukeMTMC-reID through the
dataset registry (``--data-root``) with the thesis's sizes (ResNet-50, 256 x 128, 200 epochs,
8 iterations: GPU scale; ``--backbone-weights`` for torchvision's ImageNet file). ``merge``
writes one report over several runs; ``--rows oracle,...`` adds the diagnostics rows.
Writes ``table32.csv/.md`` (all rows, every setting and seed; R1 / mAP in %), ``table31.md``
(the 50-ID and 1/3 rows in Table 3.1's layout), ``table34.csv/.md`` with ``--table34``,
``iterations.csv`` (one line per row, setting, seed and iteration) and ``fig35_<setting>.png``
(clusters vs identities, reliable share, purity / NMI, R1 / mAP along the iterations).

``scale``: our AP (dense, and on the k-NN graph in bounded memory) against scikit-learn's
dense ``AffinityPropagation`` on the same features and preferences, wall time and peak RSS in
one run, with the agreement of the clusterings (ARI); ``--full`` adds our k-NN AP at
Duke's training size (16,522 points, 2048-d) alone.

    FEDFR_NUM_THREADS=1 python -m benchmarks.sgc_dpl tables --rows labelled,ours --seeds 0,1
    FEDFR_NUM_THREADS=1 python -m benchmarks.sgc_dpl scale --out outputs/sgc-dpl
    python -m benchmarks.sgc_dpl tables --quick     # seconds: the test's preset
    python -m benchmarks.sgc_dpl merge outputs/s0 outputs/s1 --out outputs/all  # one report
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.procmon import reset_peak, self_status_bytes
from fedfr.errors import ConfigError
from fedfr.reid.data.registry import get_dataset
from fedfr.reid.data.transforms import ReidTransformConfig
from fedfr.reid.semi.clustering import (
    SGAPConfig,
    affinity_propagation,
    median_similarity,
    preferences,
    similarity_matrix,
)
from fedfr.reid.semi.sgc_dpl import (
    InitState,
    SGCDPLConfig,
    initialise,
    run_sgc_dpl,
    thesis_train_config,
)
from fedfr.reid.semi.splits import make_semi_split, manifest_name, save_manifest
from fedfr.reid.training import ReidTrainConfig
from fedfr.runtime import configure_threads

log = logging.getLogger("fedfr.benchmarks.sgc_dpl")

#: Table 3.2's rows: name -> (label, SGCDPLConfig overrides)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "pretrained": ("pre-trained backbone, no fine-tuning", {"init": "labelled",
                                                           "clustering": "none",
                                                           "init_epochs": 0}),
    "labelled": ("{X^l,Y^l}", {"init": "labelled", "clustering": "none"}),
    "labelled-long": ("{X^l,Y^l}, as many epochs as Ours", {"init": "labelled",
                                                            "clustering": "none"}),
    "init": ("{X^l,Y^l,X^u} Init", {"clustering": "none"}),
    "ap-hard": ("Init + AP, hard", {"clustering": "ap", "progressive": False,
                                    "labels": "hard"}),
    "ap-soft": ("Init + AP, soft", {"clustering": "ap", "progressive": False}),
    "ap-pl-soft": ("Init + AP + P.L., soft", {"clustering": "ap"}),
    "ours-uncentred": ("Ours, camera features not centred", {"centre_cameras": False}),
    "ours": ("Ours: Init + SG-AP + P.L., soft", {}),
}
#: diagnostics (``--rows``, never by default): X^u's true identities in place of the clusters,
#: from the labelled-only initial model, with and without the progressive selection, and
#: identity x camera (what camera-bound clusters would be at purity 1)
DIAGNOSTICS: dict[str, tuple[str, dict[str, Any]]] = {
    "oracle": ("{X^l,Y^l} init + X^u's true identities (all)",
               {"init": "labelled", "clustering": "oracle", "progressive": False}),
    "oracle-pl": ("{X^l,Y^l} init + X^u's true identities, P.L. selection",
                  {"init": "labelled", "clustering": "oracle"}),
    "oracle-camera": ("{X^l,Y^l} init + X^u's identity x camera (all)",
                      {"init": "labelled", "clustering": "oracle-camera",
                       "progressive": False}),
    "labelled-init-ours": ("{X^l,Y^l} init + SG-AP + P.L., soft", {"init": "labelled"}),
}
#: rows that only make sense when the preset pre-trains a backbone
PRETRAIN_ROWS = ("pretrained",)
#: Table 3.4's rows: one iteration, hard labels, no P.L., model initialised on {X^l, Y^l}
ROWS34: dict[str, tuple[str, dict[str, Any]]] = {
    "ap": ("AP default", {"clustering": "ap"}),
    "dbscan": ("DBSCAN default", {"clustering": "dbscan"}),
    "dbscan-ssg": ("DBSCAN SSG", {"clustering": "dbscan-ssg"}),
}
PRESETS: dict[str, dict[str, Any]] = {
    # the synthetic default: small_reid at 64 x 32 on one CPU thread, from a backbone
    # pre-trained on a labelled synthetic source domain (HSR's source model: the stand-in for
    # the thesis's ImageNet start), camera-centred clustering features (ours)
    "small": {"dataset": "synth-market", "num_ids": 150, "model": "small_reid", "height": 64,
              "width": 32, "p": 8, "k": 4, "optimizer": "adam", "lr": 3.5e-4,
              "warmup_epochs": 3, "milestones": [1000], "init_epochs": 30, "iter_epochs": 8,
              "iterations": 8, "ap_k": 100, "tau_step": 0.1, "tau_units": "tau_l",
              "normalize": True, "temperature": 0.1, "tau_pairs": "exemplar",
              "centre_cameras": True,
              "pretrain": {"source": "synth-duke", "source_ids": 300, "images_per_id": 12,
                           "source_epochs": 20, "source_lr": 1e-3}},
    # a test-sized run
    "quick": {"dataset": "synth-market", "num_ids": 24, "images_per_id": 8,
              "model": "small_reid", "height": 64, "width": 32, "p": 4, "k": 2,
              "optimizer": "adam", "lr": 3.5e-4, "warmup_epochs": 0, "milestones": [1000],
              "init_epochs": 1, "iter_epochs": 1, "iterations": 2, "ap_k": 20,
              "tau_step": 0.1, "tau_units": "tau_l", "aug_batch": 8, "normalize": True,
              "temperature": 0.1, "centre_cameras": True,
              "pretrain": {"source": "synth-duke", "source_ids": 16, "images_per_id": 8,
                           "source_epochs": 1, "source_lr": 1e-3}},
    # the thesis (Sec. 3.4.3): GPU scale
    "paper": {"dataset": "market1501", "model": "resnet50", "height": 256, "width": 128,
              "p": 16, "k": 4, "init_epochs": 200, "iter_epochs": 200, "iterations": 8,
              "ap_k": None, "tau_step": 1.0, "tau_units": "distance"},
}


def build_config(p: dict[str, Any], overrides: dict[str, Any], seed: int) -> SGCDPLConfig:
    """SGCDPLConfig of preset ``p`` with one row's ``overrides``."""
    if p.get("optimizer", "sgd") == "sgd" and "lr" not in p:
        tc = thesis_train_config()
        tc = dataclasses.replace(tc, transform=ReidTransformConfig(height=p["height"],
                                                                   width=p["width"]),
                                 p=p["p"], k=p["k"])
    else:
        tc = ReidTrainConfig(transform=ReidTransformConfig(height=p["height"], width=p["width"]),
                             p=p["p"], k=p["k"], optimizer=p["optimizer"], lr=p["lr"],
                             warmup_epochs=p["warmup_epochs"], milestones=tuple(p["milestones"]))
    sg = SGAPConfig(k=p.get("ap_k"), seed=seed)
    base = {"train": tc, "model": p["model"], "init_epochs": p["init_epochs"],
            "iter_epochs": p["iter_epochs"], "iterations": p["iterations"], "sgap": sg,
            "tau_step": p["tau_step"], "tau_units": p["tau_units"], "seed": seed}
    fields = {f.name for f in dataclasses.fields(SGCDPLConfig)} - set(base) - {"sgap"}
    base.update({k: v for k, v in p.items() if k in fields})  # e.g. normalize, temperature
    return SGCDPLConfig(**{**base, **overrides})


def _load(p: dict[str, Any], root: Path):
    opts = {}
    if p["dataset"].startswith("synth-"):
        opts = {k: p[k] for k in ("num_ids", "images_per_id", "height", "width") if k in p}
    return get_dataset(p["dataset"], root, **opts)


def _fmt(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, float) and not np.isnan(v) else "-"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    m = 100 * float(np.mean(values))
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {100 * float(np.std(values)):.1f}"


def table_markdown(final: list[dict[str, Any]], settings: list[str], names: dict[str, str],
                   title: str, command: str) -> str:
    """Rows x settings, R1 / mAP in % (mean ± std over seeds)."""
    head = "| Setting | " + " | ".join(f"{s} R1 | {s} mAP" for s in settings) + " |"
    lines = [f"# {title}", "", f"`{command}`", "", head,
             "|---|" + "---:|---:|" * len(settings)]
    for key, label in names.items():
        cells = []
        for s in settings:
            rs = [r for r in final if r["row"] == key and r["setting"] == s]
            cells += [_mean_std([r["R1"] for r in rs]), _mean_std([r["mAP"] for r in rs])]
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in final})
    lines += ["", f"Seeds: {seeds} (mean ± std over seeds where more than one)."]
    return "\n".join(lines) + "\n"


def plot_fig35(path: Path, its: list[dict[str, Any]], setting: str, row: str = "ours") -> bool:
    """Fig. 3.5 (and the quantities the thesis logs): one line per seed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib missing: no %s", path.name)
        return False
    sel = [r for r in its if r["row"] == row and r["setting"] == setting]
    if not sel:
        return False
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.4))
    for seed in sorted({r["seed"] for r in sel}):
        rs = sorted((r for r in sel if r["seed"] == seed), key=lambda r: r["iteration"])
        t = [r["iteration"] for r in rs]
        t1 = [r["iteration"] for r in rs if r["iteration"] > 0]
        later = [r for r in rs if r["iteration"] > 0]
        if later:
            ax[0].plot(t1, [r["clusters"] for r in later], "o-", label=f"clusters s{seed}")
            ax[0].plot(t1, [r["gt_ids"] for r in later], "k--", label="identities")
            ax[1].plot(t1, [r["share"] for r in later], "o-", label=f"s{seed}")
            ax[2].plot(t1, [r["purity"] for r in later], "o-", label=f"purity s{seed}")
            ax[2].plot(t1, [r["nmi_reliable"] for r in later], "s--", label=f"NMI s{seed}")
        ax[3].plot(t, [100 * r["R1"] for r in rs], "o-", label=f"R1 s{seed}")
        ax[3].plot(t, [100 * r["mAP"] for r in rs], "s--", label=f"mAP s{seed}")
    for a, title in zip(ax, ("clusters C' / identities in X^u", "reliable share |X^r|/N^u",
                             "pseudo-label purity / NMI", "R1 / mAP (%)"), strict=True):
        a.set_title(title, fontsize=9)
        a.set_xlabel("SGC-DPL iteration")
        a.legend(fontsize=7)
    fig.suptitle(f"SGC-DPL along the iterations ({setting}, row {row})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


#: preset keys that do not change iteration 0 (an init cache entry serves any of their values)
ITERATION_KEYS = ("iter_epochs", "iterations", "ap_k", "tau_step", "tau_units", "tau_pairs",
                  "temperature", "centre_cameras")


def pretrained_backbone(p: dict[str, Any], seed: int, root: Path, cache: Path | None
                        ) -> Any:
    """The net every row starts from: None (a fresh seeded net) without ``p["pretrain"]``, else
    the net trained with labels on that source domain (a synthetic domain with other people and
    cameras; the stand-in for the thesis's ImageNet-pretrained ResNet-50, whose weights cannot
    be downloaded here). It is HSR's source model (``benchmarks.hsr``: same recipe, same cache
    key, so ``cache`` entries are shared with ``--source-cache``)."""
    spec = p.get("pretrain")
    if not spec:
        return None
    from benchmarks.hsr import cached_source, source_train_config, transform_config

    hp = {"model": p["model"], "height": p["height"], "width": p["width"], "p": p["p"],
          "k": p["k"], **spec}
    src = get_dataset(hp["source"], root, num_ids=hp["source_ids"],
                      images_per_id=hp["images_per_id"], height=hp["height"], width=hp["width"])
    model, _ = cached_source(cache, f"{hp['source']}->{p['dataset']}", hp, seed, src,
                             source_train_config(hp, transform_config(hp)))
    return model


def cached_init(cache: Path | None, p: dict[str, Any], setting: str, seed: int,
                xl: list, xu: list, split: Any, cfg: SGCDPLConfig, device: str,
                backbone: Any = None) -> InitState:
    """``initialise`` (from ``backbone``) once per (preset without its iteration keys, setting,
    seed, init kind, init epochs): loaded from / saved to ``cache`` (a folder; None = no cache)
    so that reruns with other iteration settings skip the initialisation."""
    if cache is None:
        return initialise(xl, xu, split.query, split.gallery, cfg, device=device,
                          backbone=backbone)
    import hashlib

    import torch

    key = json.dumps({"params": {k: v for k, v in sorted(p.items()) if k not in ITERATION_KEYS},
                      "setting": setting, "seed": seed, "init": cfg.init,
                      "init_epochs": cfg.init_epochs}, sort_keys=True, default=str)
    path = Path(cache) / f"init-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") != key:
            raise ConfigError(f"{path}: init cache entry for another run (key differs)")
        log.info("init %s seed %d (%s, %d epochs) from %s", setting, seed, cfg.init,
                 cfg.init_epochs, path)
        return InitState(saved["model"], saved["classifier"], saved["row"])
    state = initialise(xl, xu, split.query, split.gallery, cfg, device=device,
                       backbone=backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "model": state.model, "classifier": state.classifier,
                "row": state.row}, tmp)
    tmp.replace(path)
    return state


def write_reports(out: Path, final: list[dict[str, Any]], its: list[dict[str, Any]],
                  final34: list[dict[str, Any]], settings: list[str], command: str) -> None:
    """table32.md, table31.md (with the 1/3 or 50id setting), table34.md (with Table 3.4 rows)
    and fig35_<setting>.png in ``out`` from the final rows, iterations and Table 3.4 rows."""
    names = {k: v[0] for k, v in {**ROWS, **DIAGNOSTICS}.items()}
    (out / "table32.md").write_text(table_markdown(
        final, settings, names, "Table 3.2 layout (R1 / mAP %)", command))
    t31 = [s for s in settings if s in ("50id", "1/3")]
    if t31:
        (out / "table31.md").write_text(table_markdown(
            [r for r in final if r["row"] in ("labelled", "ours")], t31,
            {"labelled": "BoT on {X^l,Y^l} only", "ours": "Ours (SGC-DPL)"},
            "Table 3.1 layout (R1 / mAP %)", command))
    if final34:
        lines = ["# Table 3.4 layout (one iteration, hard labels, no P.L.)", "",
                 f"`{command}`", "",
                 "| Clustering | setting | seed | #cluster | #ID (GT) | noise | R1 | mAP |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in final34:
            lines.append(f"| {ROWS34[r['row']][0]} | {r['setting']} | {r['seed']} | "
                         f"{r['clusters']} | {r['gt_ids']} | {r['noise']} | {_fmt(r['R1'])} | "
                         f"{_fmt(r['mAP'])} |")
        (out / "table34.md").write_text("\n".join(lines) + "\n")
    for setting in settings:
        plot_fig35(out / f"fig35_{setting.replace('/', 'of')}.png", its, setting)


def run_tables(args: argparse.Namespace) -> int:
    preset = "quick" if args.quick else "paper" if args.paper else "small"
    p = {**PRESETS[preset], **json.loads(args.set or "{}")}
    if args.paper and args.dataset:
        p["dataset"] = args.dataset
    if args.backbone_weights is not None:
        if p.get("pretrain"):
            raise ConfigError(f"--backbone-weights: the {preset} preset pre-trains its own "
                              "backbone ('pretrain'); pass --set '{\"pretrain\": null}' too")
        p["model_kwargs"] = {**p.get("model_kwargs", {}),
                             "pretrained_path": str(args.backbone_weights)}
    for key in ("init_epochs", "iter_epochs", "iterations"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = args.data_root or (out / "data")
    split = _load(p, Path(root))
    settings = args.settings.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for r in args.rows.split(",") if p.get("pretrain") or r not in PRETRAIN_ROWS]
    unknown = [r for r in rows if r not in ROWS and r not in DIAGNOSTICS]
    if unknown:
        raise ConfigError(f"--rows: unknown {unknown}; known: {list(ROWS) + list(DIAGNOSTICS)}")
    command = "python -m benchmarks.sgc_dpl " + " ".join(args.argv)
    its: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    final34: list[dict[str, Any]] = []
    (out / "config.json").write_text(json.dumps({"preset": preset, "params": p,
                                                 "command": command}, indent=1, default=str))
    for seed in seeds:
        backbone = pretrained_backbone(p, seed, Path(root), args.init_cache)
        for setting in settings:
            semi = make_semi_split(split, setting, seed)
            save_manifest(semi, out / "manifests" / manifest_name(semi))
            xl, xu = semi.parts(split.train)
            log.info("%s seed %d: %d labelled ids (%d images), %d unlabelled ids (%d images)",
                     setting, seed, len(semi.labelled_pids), len(xl),
                     len(semi.unlabelled_pids), len(xu))
            inits: dict[str, Any] = {}
            for key in rows:
                over = dict({**ROWS, **DIAGNOSTICS}[key][1])
                if key == "labelled-long":  # the baseline with Ours' total epochs
                    over["init_epochs"] = p["init_epochs"] + p["iterations"] * p["iter_epochs"]
                cfg = build_config(p, over, seed)
                t0 = time.perf_counter()
                ikey = (cfg.init, cfg.init_epochs)
                if ikey not in inits:
                    inits[ikey] = cached_init(args.init_cache, p, setting, seed, xl, xu, split,
                                              cfg, args.device, backbone)
                _, hist = run_sgc_dpl(xl, xu, split.query, split.gallery, cfg,
                                      device=args.device, init=inits[ikey])
                meta = {"row": key, "setting": setting, "seed": seed}
                its += [{**meta, **h} for h in hist]
                final.append({**meta, "R1": hist[-1]["R1"], "mAP": hist[-1]["mAP"],
                              "iterations": len(hist) - 1,
                              "seconds": time.perf_counter() - t0,
                              "labelled_ids": len(semi.labelled_pids),
                              "unlabelled_ids": len(semi.unlabelled_pids)})
                log.info("row %s %s seed %d: R1 %.3f mAP %.3f", key, setting, seed,
                         hist[-1]["R1"], hist[-1]["mAP"])
                _write_csv(out / "iterations.csv", its)
                _write_csv(out / "table32.csv", final)
            if args.table34:
                for key, (_, over) in ROWS34.items():
                    cfg = build_config(p, {"init": "labelled", "progressive": False,
                                           "labels": "hard", "iterations": 1, **over}, seed)
                    ikey = ("labelled", cfg.init_epochs)
                    if ikey not in inits:
                        inits[ikey] = cached_init(args.init_cache, p, setting, seed, xl, xu,
                                                  split, cfg, args.device, backbone)
                    _, hist = run_sgc_dpl(xl, xu, split.query, split.gallery, cfg,
                                          device=args.device, init=inits[ikey])
                    h = hist[-1]
                    final34.append({"row": key, "setting": setting, "seed": seed,
                                    "clusters": h["clusters"], "gt_ids": h["gt_ids"],
                                    "noise": h.get("noise", 0), "R1": h["R1"], "mAP": h["mAP"]})
                    _write_csv(out / "table34.csv", final34)
    write_reports(out, final, its, final34, settings, command)
    print((out / "table32.md").read_text())
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """The reports of several ``tables`` runs (e.g. one process per seed) as one: their CSVs
    concatenated into ``--out`` and every table / figure written again over all of them."""
    import pandas as pd

    def read(name: str) -> list[dict[str, Any]]:
        frames = [pd.read_csv(d / name) for d in args.runs if (d / name).is_file()]
        return pd.concat(frames).to_dict("records") if frames else []

    missing = [str(d) for d in args.runs if not (d / "table32.csv").is_file()]
    if missing:
        raise ConfigError(f"merge: no table32.csv in {missing} (expected tables --out folders)")
    final, its, final34 = read("table32.csv"), read("iterations.csv"), read("table34.csv")
    for r in final + its + final34:
        r["setting"], r["seed"] = str(r["setting"]), int(r["seed"])
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("table32.csv", final), ("iterations.csv", its),
                       ("table34.csv", final34)):
        if rows:
            _write_csv(out / name, rows)
    settings = list(dict.fromkeys(r["setting"] for r in final))
    commands = [json.loads((d / "config.json").read_text()).get("command", "?")
                for d in args.runs if (d / "config.json").is_file()]
    write_reports(out, final, its, final34, settings, "; ".join(dict.fromkeys(commands)))
    print((out / "table32.md").read_text())
    return 0


# --- scale ------------------------------------------------------------------------------------
def _measure(fn) -> tuple[dict[str, float], Any]:
    """Wall time and peak RSS (VmHWM, reset first) of ``fn()``, in MB; returns its result."""
    reset_peak()
    start = self_status_bytes("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = self_status_bytes("VmHWM")
    return {"wall_s": wall, "peak_rss_mb": peak / 2**20,
            "peak_above_start_mb": (peak - start) / 2**20}, out


def blob_features(n: int, dim: int, ids: int, noise: float, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 Gaussian clusters, ``ids`` centres (re-ID-like: ~n / ids per identity)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)
    lab = rng.integers(0, ids, n)
    return centres[lab] + noise * rng.standard_normal((n, dim)).astype(np.float32)


SCALE = {"quick": {"n": 400, "dim": 32, "ids": 20, "noise": 0.35, "k": 30},
         "default": {"n": 3000, "dim": 256, "ids": 150, "noise": 0.35, "k": 100},
         "full": {"n": 16522, "dim": 2048, "ids": 702, "noise": 0.35, "k": 100}}


def run_scale(args: argparse.Namespace) -> int:
    from sklearn.cluster import AffinityPropagation
    from sklearn.metrics import adjusted_rand_score

    s = SCALE["quick" if args.quick else "default"]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    x = blob_features(s["n"], s["dim"], s["ids"], s["noise"])
    ap = {"damping": 0.5, "max_iter": 200, "convergence_iter": 15}  # sklearn's defaults
    pref = preferences(x, median_similarity(x), "adaptive")
    res: dict[str, Any] = {"sizes": s, "ap": ap, "phases": {}}

    def sk():
        sim = similarity_matrix(x)
        m = AffinityPropagation(affinity="precomputed", preference=pref, random_state=0,
                                **ap).fit(sim)
        return m.labels_, m.n_iter_, m.n_iter_ < ap["max_iter"]

    def ours(k):
        r = affinity_propagation(x, pref, k=k, **ap)
        return r.labels, r.iterations, r.converged

    phases = {"sklearn_dense": sk, "ours_dense": lambda: ours(None),
              "ours_knn": lambda: ours(s["k"])}
    labels = {}
    for name, fn in phases.items():
        res["phases"][name], (labels[name], its, conv) = _measure(fn)
        res["phases"][name].update(iterations=int(its), converged=bool(conv))
        log.info("%s: %s", name, res["phases"][name])
    base = res["phases"]["sklearn_dense"]
    for name in phases:
        ph = res["phases"][name]
        ph["clusters"] = int(np.unique(labels[name]).size)
        ph["ari_vs_sklearn"] = float(adjusted_rand_score(labels["sklearn_dense"], labels[name]))
        ph["wall_ratio_to_sklearn"] = ph["wall_s"] / base["wall_s"]
        ph["peak_ratio_to_sklearn"] = (ph["peak_above_start_mb"]
                                       / max(base["peak_above_start_mb"], 1e-9))
    if args.full:
        f = SCALE["full"]
        xf = blob_features(f["n"], f["dim"], f["ids"], f["noise"], seed=1)
        pf = preferences(xf, median_similarity(xf), "adaptive")
        ph, r = _measure(lambda: affinity_propagation(xf, pf, k=f["k"], **ap))
        ph.update(clusters=r.num_clusters, sizes=f, iterations=r.iterations,
                  converged=r.converged)
        res["phases"]["ours_knn_full"] = ph
    stem = "sgc_dpl_ap_scale" + ("_quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps({"command": "python -m benchmarks.sgc_dpl "
                                                  + " ".join(args.argv), "result": res},
                                                 indent=1))
    lines = ["# Affinity propagation: ours (dense, k-NN graph) vs scikit-learn's dense AP", "",
             f"`python -m benchmarks.sgc_dpl {' '.join(args.argv)}`", "",
             f"N = {s['n']} points, {s['dim']}-d, {s['ids']} Gaussian identities; "
             f"s = -squared L2, adaptive (SR x median) preferences; damping / max_iter / "
             f"convergence_iter = {ap['damping']} / {ap['max_iter']} / "
             f"{ap['convergence_iter']}; k-NN graph k = {s['k']}.", "",
             "| run | wall s | wall / sklearn | peak RSS above start MB | peak / sklearn | "
             "clusters | ARI vs sklearn | AP iterations | converged |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    def num(ph: dict[str, Any], key: str, fmt: str) -> str:
        return format(ph[key], fmt) if key in ph else "-"

    for name, ph in res["phases"].items():
        lines.append(f"| {name} | {ph['wall_s']:.2f} | {num(ph, 'wall_ratio_to_sklearn', '.2f')}"
                     f" | {ph['peak_above_start_mb']:.1f} | "
                     f"{num(ph, 'peak_ratio_to_sklearn', '.3f')} | {ph['clusters']} | "
                     f"{num(ph, 'ari_vs_sklearn', '.3f')} | {ph['iterations']} | "
                     f"{ph['converged']} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="SGC-DPL tables and the AP scale benchmark")
    sub = ap.add_subparsers(dest="command")
    t = sub.add_parser("tables")
    t.add_argument("--out", type=Path, default=Path("outputs/sgc-dpl"))
    t.add_argument("--quick", action="store_true")
    t.add_argument("--paper", action="store_true", help="Market / Duke at the thesis's sizes")
    t.add_argument("--dataset", default="", help="with --paper: market1501 or dukemtmcreid")
    t.add_argument("--data-root", type=Path, default=None)
    t.add_argument("--settings", default="1/3")
    t.add_argument("--seeds", default="0")
    t.add_argument("--rows", default=",".join(ROWS))
    t.add_argument("--table34", action="store_true")
    t.add_argument("--init-epochs", type=int, default=None)
    t.add_argument("--iter-epochs", type=int, default=None)
    t.add_argument("--iterations", type=int, default=None)
    t.add_argument("--set", default="", help="JSON overrides of the preset's keys")
    t.add_argument("--backbone-weights", type=Path, default=None,
                   help="a local trunk state_dict every row starts from (with --paper: "
                        "torchvision's ImageNet ResNet-50 file, the thesis's start)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--init-cache", type=Path, default=None,
                   help="folder caching each row's iteration-0 model across runs")
    m = sub.add_parser("merge", help="one report from several tables runs")
    m.add_argument("runs", type=Path, nargs="+", help="the runs' --out folders")
    m.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("scale")
    s.add_argument("--out", type=Path, default=Path("outputs/sgc-dpl"))
    s.add_argument("--quick", action="store_true")
    s.add_argument("--full", action="store_true", help="add our k-NN AP at Duke's size")
    if not argv or argv[0] not in ("tables", "scale", "merge"):
        argv = ["tables", *argv]
    args = ap.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("fedfr.reid.semi.sgc_dpl").setLevel(logging.INFO)
    configure_threads()
    run = {"tables": run_tables, "merge": run_merge, "scale": run_scale}[args.command]
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
