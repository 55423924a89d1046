"""Sec. 7.7's benchmark in Table 7.5's layout: re-ID federations against local and central training.

Rows: pre-trained (Theta_g^0), local supervised (each client alone, the same SGD recipe and
epochs as a federation's local rounds, from Theta_g^0), FedAvg, FedAvg + each FedFR technique in
turn (hard negatives, contrastive, DFC), FedFR (all), and central training on the union of the
clients' training sets (the same epochs). Columns: each client's mAP / R1 on its own query /
gallery (federations: the workload's personalised model, Theta_l or [Theta_l, Pi_l]; Theta_g is
in the CSV as ``global``), each unseen set's mAP / R1 with the global model, their means, and the
bytes sent per round (server to clients and back). Several seeds give mean and std.

    python -m benchmarks.reid_benchmark --out outputs/reid-bench --seeds 0,1 \\
        --run-config "reid-synthetic-ids=40 num-server-rounds=4 local-epochs=1"
    python -m benchmarks.reid_benchmark --paper ...   # Sec. 7.7's real setup (needs data-root)

Writes ``reid_benchmark.csv`` (one row per method and seed, every metric) and
``reid_benchmark.md`` (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fedfr.config import Config, parse_run_config, resolve
from fedfr.face.training.batches import seeded_generator
from fedfr.reid import federated as fed
from fedfr.reid.workspace import open_reid_workspace
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


def _eval_model(cfg: Config, model, ws) -> dict[str, float]:
    """Each client's and each unseen set's mAP / R1 for one model (``<set>.mAP`` keys)."""
    out: dict[str, float] = {}
    for name in ws.client_names + ws.unseen_names:
        split = ws.dataset(name)
        res = fed.retrieval_metrics(cfg, fed.embed(cfg, model, ws.images(split.query)),
                                    fed.embed(cfg, model, ws.images(split.gallery)),
                                    split.query, split.gallery)
        out[f"{name}.mAP"], out[f"{name}.rank1"] = res["mAP"], res["rank1"]
    return out


def local_supervised(cfg: Config, theta0: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each client trains alone from Theta_g^0 for num-server-rounds x local-epochs epochs with
    the federation's local recipe (its own classifier, no averaging), then tests on its own set."""
    cfg = cfg.replace(strategy="fedavg", contrastive=False, dfc=False)
    ws = open_reid_workspace(cfg)
    out: dict[str, float] = {}
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
        r = fed.retrieval_metrics(cfg, fed.embed(cfg, model, ws.images(split.query)),
                                  fed.embed(cfg, model, ws.images(split.gallery)),
                                  split.query, split.gallery)
        out[f"{name}.mAP"], out[f"{name}.rank1"] = r["mAP"], r["rank1"]
    return out


def central_union(cfg: Config, theta0: dict[str, torch.Tensor]) -> dict[str, float]:
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


def federated(conf: dict[str, Any], over: dict[str, Any], out: Path) -> dict[str, float]:
    """Final metrics of one in-process federation: the personalised model per client (Theta_g's
    as ``global.*``) and Theta_g on the unseen sets."""
    from server.inprocess import run_inprocess

    report = run_inprocess({**conf, **over, "output-dir": str(out), "resume": False})
    cfg = resolve({**conf, **over})
    personal = get_workload("reid").personal_model(cfg)
    final = dict(report["final"]["personalized_by_model"].get(personal, {}))
    final.update({f"global.{k}": v for k, v in
                  report["final"]["personalized_by_model"].get("global", {}).items()})
    final.update(report["final"]["generic"])
    return final


def run(conf: dict[str, Any], seeds: list[int], out: Path, methods: list[str]) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        base = {**conf, "task": "reid", "seed": seed}
        base.setdefault("num-clients", len([c for c in resolve(base).reid_clients.split(",")
                                            if c.strip()]))
        cfg = resolve(base)
        ws = get_workload("reid").open_server_data(cfg)
        arrays, _ = get_workload("reid").initial_arrays(cfg, ws)
        theta0 = unpack_arrays(arrays)[0]
        for method in methods:
            t0 = time.perf_counter()
            over = METHODS[method]
            sent = 0
            if over is not None:
                metrics = federated(base, over, out / f"seed{seed}" / method.replace(" ", "_"))
                sent = bytes_per_round(resolve({**base, **over}))
            elif method == "local supervised":
                metrics = local_supervised(cfg, theta0)
            elif method == "central (union)":
                metrics = central_union(cfg, theta0)
            else:
                model = fed.load_received(cfg, theta0, None, ws.images(ws.public()[0]))
                metrics = _eval_model(cfg, model, ws)
            rows.append({"method": method, "seed": seed, "bytes_per_round": sent,
                         "seconds": time.perf_counter() - t0, **metrics})
            logging.info("%s seed %d done in %.0f s", method, seed, rows[-1]["seconds"])
    return pd.DataFrame(rows)


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
        mb = sub["bytes_per_round"].iloc[0] / 1e6
        cells.append(f"{mb:.2f}" if mb else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/reid-benchmark"))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--run-config", default="", help="overrides, Flower syntax")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of: {', '.join(METHODS)}")
    parser.add_argument("--paper", action="store_true",
                        help="Sec. 7.7's real setup (set data-root in --run-config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    configure_threads()
    conf = dict(PAPER) if args.paper else {}
    conf.update(parse_run_config(args.run_config))
    conf.setdefault("cache-dir", str((args.out / "cache").resolve()))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; expected a subset of {list(METHODS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    frame = run(conf, [int(s) for s in args.seeds.split(",")], args.out.resolve(), methods)
    frame.to_csv(args.out / "reid_benchmark.csv", index=False)
    cfg = resolve({**conf, "task": "reid"})
    md = markdown(frame, [c.strip() for c in cfg.reid_clients.split(",")],
                  [u.strip() for u in cfg.reid_unseen.split(",")], cfg.reid_ap)
    (args.out / "reid_benchmark.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
