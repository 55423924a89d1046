"""Sec. 7.7's benchmark in Table 7.5's layout: re-ID federations against local and central training.

Rows: pre-trained (Theta_g^0), local supervised (each client alone, the same SGD recipe and
epochs as a federation's local rounds, from Theta_g^0), FedAvg, FedAvg + each FedFR technique in
turn (hard negatives, contrastive, DFC), FedFR (all), and central training on the union of the
clients' training sets (the same epochs). Columns: each client's mAP / R1 on its own query /
gallery (federations: the workload's personalised model, Theta_l or [Theta_l, Pi_l]; Theta_g is
in the CSV as ``global``), each unseen set's mAP / R1 with the global model, their means, and the
bytes sent per round (server to clients and back).

    python -m benchmarks.reid_benchmark --out outputs/reid-bench --seeds 0,1 \\
        --run-config "reid-synthetic-ids=40 num-server-rounds=4 local-epochs=1"
    python -m benchmarks.reid_benchmark --paper ...   # Sec. 7.7's real setup (needs data-root)

Writes, like the face experiments (``benchmarks/common.py``): ``reid_benchmark.csv`` (one row per
method, every metric as a fraction), ``reid_benchmark.md`` (Table 7.5's layout, %) and
``reid_benchmark_cmc.png`` (one panel per evaluated set, each row's CMC at ranks 1..20). With
``--seeds`` each seed runs in ``<out>/seed-<s>/`` (those three files each) and the top-level
``reid_benchmark.csv`` / ``.md`` hold mean, sd and a 95 % Student-t interval over the seeds per
cell (``write_seed_table``), ``reid_benchmark_runs.csv`` every method x seed, and the CMC figure
the mean curves (shaded: min..max over the seeds). A bad config or missing dataset stops before
any training with one line naming it (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.common import parse_seeds, seed_dirs, write_seed_table
from fedfr.config import Config, parse_run_config, resolve, resolve_path
from fedfr.errors import run_entry_point
from fedfr.face.training.batches import seeded_generator
from fedfr.reid import federated as fed
from fedfr.reid.workspace import ReidWorkspace, names, open_reid_workspace
from fedfr.runtime import configure_threads
from fedfr.workloads import get_workload
from strategies.records import unpack_arrays

#: Sec. 7.7's setup: four real client datasets, four unseen ones, ResNet-50 at 256 x 128, the
#: thesis's schedule (100 rounds of one local epoch, as the code behind Table 7.5)
PAPER = {"reid-clients": "market1501,dukemtmcreid,cuhk03,msmt17",
         "reid-unseen": "viper,ilids,grid,prid", "reid-model": "resnet50", "reid-height": 256,
         "reid-width": 128, "num-server-rounds": 100, "local-epochs": 1, "batch-size": 64,
         "pretrain-epochs": 60}

#: method -> run-config overrides of its federation (None: not a federation)
METHODS: dict[str, dict[str, Any] | None] = {
    "pre-trained": None,
    "local supervised": None,
    "FedAvg": {"strategy": "fedavg", "contrastive": False, "dfc": False},
    "FedAvg + hard negatives": {"strategy": "fedfr", "hard-negatives": True,
                                "contrastive": False, "dfc": False},
    "FedAvg + contrastive": {"strategy": "fedavg", "contrastive": True, "dfc": False},
    "FedAvg + DFC": {"strategy": "fedavg", "contrastive": False, "dfc": True},
    "FedFR (all)": {"strategy": "fedfr", "hard-negatives": True, "contrastive": True,
                    "dfc": True},
    "central (union)": None,
}


def bytes_per_round(cfg: Config) -> int:
    """Bytes of one round's messages: the arrays to every client and back (float32 / int64)."""
    model = fed.make_model(cfg)
    n = sum(v.numel() * v.element_size() for v in fed.shared_state(cfg, model).values())
    if cfg.uses_public_data:
        ws = open_reid_workspace(cfg)
        k_g = max(ws.public()[1]) + 1
        n += k_g * model.feature_dim * 4
    return 2 * cfg.num_clients * n


#: CMC curves are drawn at ranks 1..CMC_RANKS
CMC_RANKS = 20


def _set_result(cfg: Config, model, ws, split, head=None) -> tuple[float, float, list[float]]:
    """(mAP, rank-1, CMC rank-1..CMC_RANKS) of one model on one query / gallery set (the
    arithmetic of ``fed.retrieval_metrics``: Euclidean on normalised f_bn, ``reid-ap``)."""
    from fedfr.reid.evaluation.rank import features_to_rank

    qf = fed.embed(cfg, model, ws.images(split.query), head)
    gf = fed.embed(cfg, model, ws.images(split.gallery), head)
    res = features_to_rank(qf, gf, [r.pid for r in split.query], [r.pid for r in split.gallery],
                           [r.camid for r in split.query], [r.camid for r in split.gallery],
                           metric="euclidean", ap=cfg.reid_ap, max_rank=CMC_RANKS)
    return float(res.mAP), float(res.cmc[0]), [float(v) for v in res.cmc]


def _eval_model(cfg: Config, model, ws, names: list[str] | None = None
                ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each client's and each unseen set's mAP / R1 for one model (``<set>.mAP`` keys) and its
    CMC curves ({set: [rank-1..20]})."""
    out: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    for name in names if names is not None else ws.client_names + ws.unseen_names:
        out[f"{name}.mAP"], out[f"{name}.rank1"], curves[name] = _set_result(
            cfg, model, ws, ws.dataset(name))
    return out, curves


def local_supervised(cfg: Config, theta0: dict[str, torch.Tensor]
                     ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each client trains alone from Theta_g^0 for num-server-rounds x local-epochs epochs with
    the federation's local recipe (its own classifier, no averaging), then tests on its own set."""
    cfg = cfg.replace(strategy="fedavg", contrastive=False, dfc=False)
    ws = open_reid_workspace(cfg)
    out: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    for pid, name in enumerate(ws.client_names):
        split = ws.client(pid)
        labels, _ = split.train_labels()
        images = ws.images(split.train)
        received, state = dict(theta0), None
        for rnd in range(1, cfg.num_server_rounds + 1):
            res = fed.local_round(cfg, received, None, state, split.train, images,
                                  torch.as_tensor(labels), seeded_generator(cfg.seed, rnd, pid),
                                  rnd)
            state, received = res.state, res.backbone
        model = fed.make_model(cfg)
        model.load_state_dict(state.prev_backbone)
        out[f"{name}.mAP"], out[f"{name}.rank1"], curves[name] = _set_result(cfg, model, ws,
                                                                             split)
    return out, curves


def central_union(cfg: Config, theta0: dict[str, torch.Tensor]
                  ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Theta_g^0 trained on the union of the clients' training sets (one classifier over all
    their identities) for num-server-rounds x local-epochs epochs with the local SGD recipe."""
    from fedfr.reid.models import IdentityClassifier
    from fedfr.reid.training import train_epochs, union_train_set

    ws = open_reid_workspace(cfg)
    splits = [ws.client(i) for i in range(len(ws.client_names))]
    records, labels = union_train_set(splits)
    images = ws.images(records)
    model = fed.load_received(cfg, theta0, None, images)
    feats = fed.embed(cfg, model, images)
    classifier = IdentityClassifier(model.feature_dim, max(labels) + 1)
    with torch.no_grad():
        classifier.fc.weight.copy_(fed.imprint(feats, torch.as_tensor(labels), max(labels) + 1))
    tcfg = fed.train_config(cfg, pretrain=False)
    train_epochs(model, classifier, records, labels, tcfg,
                 epochs=cfg.num_server_rounds * cfg.local_epochs,
                 generator=torch.Generator().manual_seed(cfg.seed),
                 dataset=fed.prefilled_dataset(records, images, tcfg))
    return _eval_model(cfg, model, ws)


def federated(conf: dict[str, Any], over: dict[str, Any], out: Path
              ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Final metrics of one in-process federation: the personalised model per client (Theta_g's
    as ``global.*``) and Theta_g on the unseen sets; the same models' CMC curves, evaluated
    again from the run folder (``final_model.pt``, the clients' state under ``client-state``)."""
    from flwr.app import ArrayRecord

    from fedfr.checkpoint import safe_load
    from fedfr.workloads.base import NodeInfo
    from server.inprocess import run_inprocess

    shutil.rmtree(out, ignore_errors=True)
    report = run_inprocess({**conf, **over, "output-dir": str(out), "resume": False})
    cfg = resolve({**conf, **over, "output-dir": str(out)})
    workload = get_workload("reid")
    personal = workload.personal_model(cfg)
    final = dict(report["final"]["personalized_by_model"].get(personal, {}))
    final.update({f"global.{k}": v for k, v in
                  report["final"]["personalized_by_model"].get("global", {}).items()})
    final.update(report["final"]["generic"])
    arrays = ArrayRecord(safe_load(out / "final_model.pt"))
    ws = open_reid_workspace(cfg)
    curves: dict[str, list[float]] = {}
    state_root = resolve_path(cfg.state_dir) if cfg.state_dir else out / "client-state"
    for pid, name in enumerate(ws.client_names):  # as clients/app.py's state_root
        node = NodeInfo(pid, {}, state_root)
        [(_, model, head)] = workload.client_models(cfg, node, arrays, cfg.num_server_rounds,
                                                    report["experiment-id"], [personal])
        curves[name] = _set_result(cfg, model, ws, ws.client(pid), head)[2]
    model = workload.server_model(cfg, ws, arrays)
    curves.update(_eval_model(cfg, model, ws, ws.unseen_names)[1])
    return final, curves


def with_clients(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` as a re-ID run with one client per ``reid-clients`` dataset unless it says how
    many (``num-clients``)."""
    base = {**conf, "task": "reid"}
    base.setdefault("num-clients", len(names(resolve(base).reid_clients, "reid-clients")))
    return base


def run_seed(base: dict[str, Any], out: Path, methods: list[str]
             ) -> list[tuple[list[str], dict[str, Any]]]:
    """Every method's row for one seed, written to ``out`` (``reid_benchmark.csv`` / ``.md`` /
    ``_cmc.png``); rows as ``write_seed_table`` takes them (metrics under ``"reid"``)."""
    base = with_clients(base)
    cfg = resolve(base)
    ws = get_workload("reid").open_server_data(cfg)
    ws.open_all()  # the local and central rows need every dataset here: fail before training
    arrays, _ = get_workload("reid").initial_arrays(cfg, ws)
    theta0 = unpack_arrays(arrays)[0]
    rows: list[tuple[list[str], dict[str, Any]]] = []
    for method in methods:
        t0 = time.perf_counter()
        over = METHODS[method]
        sent = math.nan
        if over is not None:
            metrics, curves = federated(base, over, out / method.replace(" ", "_"))
            sent = bytes_per_round(resolve({**base, **over}))
        elif method == "local supervised":
            metrics, curves = local_supervised(cfg, theta0)
        elif method == "central (union)":
            metrics, curves = central_union(cfg, theta0)
        else:
            model = fed.load_received(cfg, theta0, None, ws.images(ws.public()[0]))
            metrics, curves = _eval_model(cfg, model, ws)
        for m in ("mAP", "rank1"):
            metrics[f"clients.{m}"] = _mean([metrics.get(f"{n}.{m}") for n in ws.client_names])
            metrics[f"unseen.{m}"] = _mean([metrics.get(f"{n}.{m}") for n in ws.unseen_names]
                                           if method != "local supervised" else [])
        rows.append(([method], {"reid": metrics, "curves": curves, "seed": cfg.seed,
                                "bytes_per_round": sent, "mb_per_round": sent / 1e6,
                                "seconds": time.perf_counter() - t0}))
        logging.info("%s seed %d done in %.0f s", method, cfg.seed, rows[-1][1]["seconds"])
    frame = long_frame([rows])
    frame.to_csv(out / "reid_benchmark.csv", index=False)
    (out / "reid_benchmark.md").write_text(
        markdown(frame, ws.client_names, ws.unseen_names, cfg.reid_ap) + "\n")
    plot_cmc(out / "reid_benchmark_cmc.png", [rows], ws.client_names, ws.unseen_names,
             f"seed {cfg.seed}")
    return rows


def _mean(values: list[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.fmean(vals) if vals else math.nan


def long_frame(per_seed: list[list[tuple[list[str], dict[str, Any]]]]) -> pd.DataFrame:
    """One row per method and seed: method, seed, bytes_per_round, seconds, every metric."""
    return pd.DataFrame([{"method": labels[0], "seed": res["seed"],
                          "bytes_per_round": res["bytes_per_round"], "seconds": res["seconds"],
                          **res["reid"]} for rows in per_seed for labels, res in rows])


def plot_cmc(path: Path, per_seed: list[list[tuple[list[str], dict[str, Any]]]],
             clients: list[str], unseen: list[str], note: str) -> None:
    """One panel per evaluated set (clients, then unseen sets): each row's CMC at ranks
    1..CMC_RANKS in %, the mean over seeds (shaded: min..max over seeds when several)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = clients + unseen
    ncol = min(4, len(sets))
    nrow = math.ceil(len(sets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    ranks = np.arange(1, CMC_RANKS + 1)
    for ax, name in zip(axes.flat, sets, strict=False):
        for i, (labels, _) in enumerate(per_seed[0]):
            cs = [rows[i][1]["curves"][name] for rows in per_seed
                  if name in rows[i][1]["curves"]]
            if not cs:
                continue  # local supervised has no model for the unseen sets
            c = 100 * np.asarray(cs, dtype=float)
            color = f"C{i % 10}"  # one colour per row in every panel (some rows skip a set)
            ax.plot(ranks, c.mean(0), marker=".", color=color, label=labels[0])
            if len(cs) > 1:
                ax.fill_between(ranks, c.min(0), c.max(0), color=color, alpha=0.15)
        role = "client" if name in clients else "unseen"
        ax.set(title=f"{name} ({role})", xlabel="rank", ylabel="matching rate (%)",
               xlim=(1, CMC_RANKS), ylim=(0, 100))
        ax.set_xticks([1, 5, 10, 15, 20])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sets):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle(f"CMC, rank 1..{CMC_RANKS} ({note}); clients: personalised / own model, "
                 "unseen: Theta_g", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(labels) / 4), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_columns(clients: list[str], unseen: list[str]) -> list[tuple[str, str, str]]:
    """(section, metric, title) columns of the table over seeds."""
    cols = [("reid", f"{s}.{m}", f"{s} {t}") for s in clients + unseen
            for m, t in (("mAP", "mAP"), ("rank1", "R1"))]
    return cols + [("reid", "clients.mAP", "clients mean mAP"),
                   ("reid", "clients.rank1", "clients mean R1"),
                   ("reid", "unseen.mAP", "unseen mean mAP"),
                   ("reid", "unseen.rank1", "unseen mean R1")]


def run(conf: dict[str, Any], seeds: list[int] | None, out: Path, methods: list[str]
        ) -> list[list[tuple[list[str], dict[str, Any]]]]:
    """Every method for each seed (``seed_dirs``: ``<out>/seed-<s>/`` with ``--seeds``, else
    ``out`` itself); with seeds, ``<out>/reid_benchmark.{csv,md}`` hold mean, sd and a 95 %
    Student-t interval over the seeds per cell and ``reid_benchmark_cmc.png`` the mean curves.
    Returns the rows per seed (``long_frame`` makes them one table row per method and seed).
    """
    per_seed = []
    for b, o in seed_dirs(conf, out, seeds):
        o.mkdir(parents=True, exist_ok=True)
        per_seed.append(run_seed(b, o, methods))
    if seeds:
        cfg = resolve(with_clients(conf))
        ws = ReidWorkspace(cfg)  # the roles only; reads no data
        clients, unseen = ws.client_names, ws.unseen_names
        note = (f"mAP / R1 in % ({cfg.reid_ap} AP) over seeds {seeds}; clients: the "
                "personalised model (federations: Theta_l or [Theta_l, Pi_l]) or the client's "
                "own model; unseen: Theta_g. MB / round: server to clients and back.")
        write_seed_table(out, "reid_benchmark", per_seed, ["method"], sections=("reid",),
                         extra=[("mb_per_round", "MB / round"), ("seconds", "seconds")],
                         note=note, cols=seed_columns(clients, unseen))
        long_frame(per_seed).to_csv(out / "reid_benchmark_runs.csv", index=False)
        plot_cmc(out / "reid_benchmark_cmc.png", per_seed, clients, unseen,
                 f"mean over seeds {seeds}")
    return per_seed


def _cell(values: list[float]) -> str:
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    mean = 100 * statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} +- {100 * statistics.stdev(vals):.1f}"


def markdown(frame: pd.DataFrame, clients: list[str], unseen: list[str], ap: str) -> str:
    seeds = sorted(frame["seed"].unique())
    head = ["method"] + [f"{s} {m}" for s in clients + unseen for m in ("mAP", "R1")]
    head += ["unseen mean mAP", "unseen mean R1", "MB / round"]
    lines = [f"mAP / R1 in % ({ap} AP), mean +- std over seeds {list(map(int, seeds))}; clients: "
             "the personalised model (federations) or the client's own model; unseen: Theta_g.",
             "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for method in dict.fromkeys(frame["method"]):
        sub = frame[frame["method"] == method]
        cells = [method]
        for s in clients + unseen:
            for m in ("mAP", "rank1"):
                col = f"{s}.{m}"
                cells.append(_cell(list(sub[col])) if col in sub else "n/a")
        for m in ("mAP", "rank1"):
            cols = [f"{s}.{m}" for s in unseen if f"{s}.{m}" in sub]
            per_seed = [statistics.fmean(float(r[c]) for c in cols) for _, r in sub.iterrows()] \
                if cols else []
            cells.append(_cell(per_seed))
        mb = float(sub["bytes_per_round"].iloc[0]) / 1e6
        cells.append(f"{mb:.2f}" if mb > 0 else "-")  # nan / 0: not a federation
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/reid-benchmark"))
    p.add_argument("--seeds", default=None, type=parse_seeds,
                   help="comma-separated seeds (e.g. 0,1): every row runs once per seed under "
                        "<out>/seed-<s>/ (a seed also re-draws the synthetic domains) and the "
                        "top-level tables report mean, sd and a 95%% interval; default: the "
                        "config's seed, one run in <out>")
    p.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of: {', '.join(METHODS)}")
    p.add_argument("--paper", action="store_true",
                   help="Sec. 7.7's real setup (set data-root in --run-config)")
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of a user error (default: one line, exit 2)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        p.error(f"--methods: unknown {bad}; expected a subset of {list(METHODS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    configure_threads()

    def go() -> int:
        conf = base_config(args.run_config, args.paper, args.out)
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        run(conf, args.seeds, out, methods)
        print((out / "reid_benchmark.md").read_text())
        return 0

    return run_entry_point(go, "reid_benchmark", debug=args.debug)


def base_config(run_config: str, paper: bool, out: Path) -> dict[str, Any]:
    """The benchmark's run config: the ``--paper`` preset (or none), then ``--run-config``;
    checked (ConfigError on a bad key or value) before anything runs."""
    conf = {**(PAPER if paper else {}), **parse_run_config(run_config), "task": "reid"}
    conf.setdefault("cache-dir", str((out / "cache").resolve()))
    cfg = resolve(conf)
    get_workload("reid").check_config(cfg.replace(num_clients=0))
    return conf


if __name__ == "__main__":
    raise SystemExit(main())
