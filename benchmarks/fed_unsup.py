"""Federated re-ID with few or no labels: SGC-DPL (``semi-reid``) and HSR (``unsup-reid``), each
compared on the same split with the source-only model, each site alone, the federation and the
centralised method on the union of the sites' data.

Rows (per task, per seed; every model tested on each site's own query / gallery with the
federation's protocol, ``fed.embed`` + ``fed.retrieval_metrics``):

* ``source only``: Theta_g^0, pre-trained on the server's public labelled set (``reid-public``);
* ``site alone``: each site runs the task's local step (``semi_step`` / ``hsr_step``) for
  ``num-server-rounds`` rounds from Theta_g^0 without averaging, tested on its own set;
* ``federated (Theta_g)`` / ``federated (Theta_l)``: the task through the unchanged federation
  (in-process grid), the final global model and each site's last local model;
* ``federated, labelled only (Theta_g)`` (semi-reid): the same federation with every round
  SGC-DPL's labelled-only iteration 0 (``semi-init = labelled``, ``semi-init-rounds`` = all
  rounds): FedAvg on each site's X^l alone, Table 3.2's first row;
* ``centralised``: the method on the union of the sites' training data (pids and cameras made
  disjoint per site), from Theta_g^0, for as many steps: SGC-DPL = ``semi-init-rounds`` rounds of
  iteration 0 (``semi_step``) then ``run_sgc_dpl`` (their loop) for the remaining iterations on
  the union's labelled / unlabelled parts (the sites' own splits); HSR = ``run_hsr`` with
  ``num-server-rounds`` iterations of ``local-epochs`` epochs.

Writes ``fed_unsup_runs.csv`` (every task x row x seed x metric), ``fed_unsup.csv`` (mean, sd
over seeds) and ``fed_unsup.md`` (mean ± sd in %, with the command).

    FEDFR_NUM_THREADS=1 python -m benchmarks.fed_unsup --seeds 0,1 --out outputs/fed-unsup
    python -m benchmarks.fed_unsup --quick --out /tmp/fu     # the test's size (seconds)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fedfr.config import DEFAULTS, Config, parse_run_config, resolve
from fedfr.face.training.batches import seeded_generator
from fedfr.reid import federated as fed
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.runtime import configure_threads
from fedfr.workloads import get_workload
from strategies.records import unpack_arrays

log = logging.getLogger("fedfr.benchmarks.fed_unsup")

TASKS = ("semi-reid", "unsup-reid")
ROWS = ("source only", "site alone", "federated (Theta_g)", "federated (Theta_l)",
        "federated, labelled only (Theta_g)", "centralised")
#: the benchmark's run config (CPU size): two synthetic camera sites, the public set anchors
SMALL: dict[str, Any] = {
    "reid-clients": "synth-market,synth-duke", "reid-unseen": "synth-viper",
    "reid-public": "synth-public", "reid-synthetic-ids": 30, "reid-height": 64,
    "reid-width": 32, "pretrain-epochs": 10, "num-server-rounds": 3, "local-epochs": 2,
    "batch-size": 32, "reid-instances": 4, "lr": 0.01, "semi-ratio": "1/3",
    "semi-init-rounds": 1, "unsup-rho": 0.016, "strategy": "fedavg", "contrastive": False,
    "dfc": False, "final-eval-models": "global,local", "personal-eval-every": 0,
}
QUICK: dict[str, Any] = {**SMALL, "reid-synthetic-ids": 12, "reid-height": 32,
                         "reid-width": 16, "pretrain-epochs": 1, "num-server-rounds": 2,
                         "local-epochs": 1, "batch-size": 8, "reid-instances": 2,
                         "unsup-rho": 0.05}


def site_metrics(cfg: Config, model, ws, pid: int) -> dict[str, float]:
    """mAP / rank1 of ``model`` on site ``pid``'s query / gallery (the workload's protocol)."""
    split = ws.client(pid)
    res = fed.retrieval_metrics(cfg, fed.embed(cfg, model, ws.images(split.query)),
                                fed.embed(cfg, model, ws.images(split.gallery)),
                                split.query, split.gallery)
    return {"mAP": res["mAP"], "rank1": res["rank1"]}


def with_means(per_site: dict[str, dict[str, float]]) -> dict[str, float]:
    """{site: {mAP, rank1}} -> flat ``<site>.<metric>`` plus the means over sites."""
    out = {f"{s}.{k}": v for s, m in per_site.items() for k, v in m.items()}
    for k in ("mAP", "rank1"):
        out[k] = statistics.fmean(m[k] for m in per_site.values())
    return out


def disjoint(records: list[ReidImage], site: int) -> list[ReidImage]:
    """Records with pids and camera ids offset by site, so that the union keeps sites apart."""
    return [dataclasses.replace(r, pid=r.pid + 100_000 * site, camid=r.camid + 100 * site)
            for r in records]


# --- the rows ---------------------------------------------------------------------------------
def site_alone(task: str, cfg: Config, ws, theta0: dict[str, torch.Tensor]
               ) -> dict[str, float]:
    """Each site runs the task's local step for every round from Theta_g^0, alone."""
    per: dict[str, dict[str, float]] = {}
    for pid, name in enumerate(ws.client_names):
        split = ws.client(pid)
        model = fed.load_received(cfg, theta0, None, ws.images(split.train))
        w = None
        for rnd in range(1, cfg.num_server_rounds + 1):
            w = local_step(task, cfg, model, w, split, rnd, pid)
        per[name] = site_metrics(cfg, model, ws, pid)
    return with_means(per)


def local_step(task: str, cfg: Config, model, w, split: ReidSplit, rnd: int, pid: int):
    """The federation's local step of ``task`` (in place); returns the kept classifier rows."""
    if task == "semi-reid":
        from fedfr.reid.semi.federated import semi_config, semi_step, site_split

        _, xl, xu = site_split(split.train, split.name, cfg.semi_ratio, cfg.seed)
        step = max(0, rnd - cfg.semi_init_rounds)
        return semi_step(model, w, xl, xu, semi_config(cfg), step,
                         seeded_generator(cfg.seed, rnd, pid)).w
    from fedfr.reid.unsup.federated import hsr_config, hsr_step

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=seeded_generator(cfg.seed, rnd, pid)))
    hsr_step(model, split.train, hsr_config(cfg, len(split.train)), seed, split.name)
    return None


def centralised(task: str, cfg: Config, ws, theta0: dict[str, torch.Tensor]
                ) -> dict[str, float]:
    """The method on the union of the sites' training data (module doc)."""
    splits = [ws.client(i) for i in range(len(ws.client_names))]
    union_train = [r for i, s in enumerate(splits) for r in disjoint(s.train, i)]
    model = fed.load_received(cfg, theta0, None, ws.images([r for s in splits for r in s.train]))
    if task == "semi-reid":
        from fedfr.reid.models import IdentityClassifier
        from fedfr.reid.semi.federated import semi_config, semi_step, site_split
        from fedfr.reid.semi.sgc_dpl import InitState, run_sgc_dpl

        xl: list[ReidImage] = []
        xu: list[ReidImage] = []
        for i, s in enumerate(splits):  # the sites' own labelled / unlabelled parts
            _, sl, su = site_split(s.train, s.name, cfg.semi_ratio, cfg.seed)
            xl += disjoint(sl, i)
            xu += disjoint(su, i)
        scfg = semi_config(cfg)
        w = None
        init_rounds = min(cfg.semi_init_rounds, cfg.num_server_rounds)
        for rnd in range(1, init_rounds + 1):
            w = semi_step(model, w, xl, xu, scfg, 0, seeded_generator(cfg.seed, rnd, 99)).w
        iters = cfg.num_server_rounds - init_rounds
        if iters > 0:
            if w is None:
                w = semi_step(model, None, xl, xu, dataclasses.replace(scfg, init_epochs=0), 0,
                              seeded_generator(cfg.seed, 0, 99)).w
            clf = IdentityClassifier(model.feature_dim, w.shape[0])
            with torch.no_grad():
                clf.fc.weight.copy_(w)
            query = [r for i, s in enumerate(splits) for r in disjoint(s.query, i)]
            gallery = [r for i, s in enumerate(splits) for r in disjoint(s.gallery, i)]
            model, _ = run_sgc_dpl(xl, xu, query, gallery,
                                   dataclasses.replace(scfg, iterations=iters),
                                   init=InitState(model, clf, {"iteration": 0}))
    else:
        from fedfr.reid.unsup.federated import hsr_config
        from fedfr.reid.unsup.hsr import run_hsr

        hcfg = dataclasses.replace(hsr_config(cfg, len(union_train)),
                                   iterations=cfg.num_server_rounds)
        run_hsr(model, ReidSplit("union", Path("."), union_train, [], []), hcfg,
                evaluate=False)
    return with_means({name: site_metrics(cfg, model, ws, i)
                       for i, name in enumerate(ws.client_names)})


def federated(task: str, conf: dict[str, Any], out: Path) -> dict[str, dict[str, float]]:
    """The task through the in-process federation: {"global": ..., "local": ...} metrics."""
    from server.inprocess import run_inprocess

    shutil.rmtree(out, ignore_errors=True)
    report = run_inprocess({**for_task(conf, task), "output-dir": str(out), "resume": False})
    names = [n for n in conf["reid-clients"].split(",") if n]
    res = {}
    for model in ("global", "local"):
        got = report["final"]["personalized_by_model"][model]
        res[model] = with_means({n: {k: got[f"{n}.{k}"] for k in ("mAP", "rank1")}
                                 for n in names})
    return res


def for_task(conf: dict[str, Any], task: str) -> dict[str, Any]:
    """``conf`` with ``task`` set and the other few-label task's keys left out (they are
    refused for a task they do not apply to)."""
    other = "unsup-" if task == "semi-reid" else "semi-"
    return {**{k: v for k, v in conf.items() if not k.startswith(other)}, "task": task}


def run_task(task: str, conf: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """Every row of one task at one seed: [{task, row, seed, seconds, <metrics>}]."""
    conf = for_task(conf, task)
    conf.setdefault("num-clients", len([n for n in conf["reid-clients"].split(",") if n]))
    conf.setdefault("min-train-nodes", conf["num-clients"])
    cfg = resolve(conf)
    workload = get_workload(task)
    workload.check_config(cfg)
    ws = workload.open_server_data(cfg)
    arrays, _ = workload.initial_arrays(cfg, ws)
    theta0 = unpack_arrays(arrays)[0]
    rows: list[dict[str, Any]] = []

    def add(row: str, metrics: dict[str, float], t0: float) -> None:
        rows.append({"task": task, "row": row, "seed": cfg.seed,
                     "seconds": time.perf_counter() - t0, **metrics})
        log.info("%s seed %d %s: mAP %.3f R1 %.3f (%.0f s)", task, cfg.seed, row,
                 metrics["mAP"], metrics["rank1"], rows[-1]["seconds"])

    t0 = time.perf_counter()
    src = fed.load_received(cfg, theta0, None, ws.images(ws.public()[0]))
    add("source only", with_means({n: site_metrics(cfg, src, ws, i)
                                   for i, n in enumerate(ws.client_names)}), t0)
    t0 = time.perf_counter()
    add("site alone", site_alone(task, cfg, ws, copy.deepcopy(theta0)), t0)
    t0 = time.perf_counter()
    fedres = federated(task, conf, out / f"{task}-seed{cfg.seed}")
    add("federated (Theta_g)", fedres["global"], t0)
    add("federated (Theta_l)", fedres["local"], time.perf_counter())
    if task == "semi-reid":  # Table 3.2's first row, federated: FedAvg on X^l only
        t0 = time.perf_counter()
        lab = {**conf, "semi-init": "labelled", "semi-init-rounds": cfg.num_server_rounds}
        add("federated, labelled only (Theta_g)",
            federated(task, lab, out / f"{task}-labelled-seed{cfg.seed}")["global"], t0)
    t0 = time.perf_counter()
    add("centralised", centralised(task, cfg, ws, copy.deepcopy(theta0)), t0)
    return rows


# --- tables -----------------------------------------------------------------------------------
def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every metric column, per task and row (in ROWS order)."""
    metrics = [c for c in runs.columns if c not in ("task", "row", "seed")]
    g = runs.groupby(["task", "row"], sort=False)[metrics]
    mean, sd = g.mean(), g.std(ddof=1).fillna(0.0)
    return mean.join(sd.add_suffix(" sd")).reset_index()


def markdown(runs: pd.DataFrame, sites: list[str], command: str, note: str) -> str:
    """mean ± sd (%) of the mean over sites and of each site, per task and row."""
    seeds = sorted(runs["seed"].unique().tolist())
    lines = [f"Command: `{command}`", "",
             f"R1 / mAP in % on each site's own query / gallery (non-interpolated AP), mean ± sd "
             f"over seeds {', '.join(map(str, seeds))}. {note}", ""]
    cols = ["mAP", "rank1"] + [f"{s}.{k}" for s in sites for k in ("mAP", "rank1")]
    head = ["task", "row", "mean mAP", "mean R1"] + [f"{s} {'mAP' if k == 'mAP' else 'R1'}"
                                                      for s in sites for k in ("mAP", "rank1")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for (task, row), grp in runs.groupby(["task", "row"], sort=False):
        cells = []
        for c in cols:
            vals = [100 * v for v in grp[c].tolist()]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.fmean(vals):.1f} ± {sd:.1f}")
        lines.append(f"| {task} | {row} | " + " | ".join(cells) + " |")
    secs = runs.groupby("task")["seconds"].sum()
    lines += ["", "Wall seconds per task (all rows and seeds): " +
              ", ".join(f"{t} {s:.0f}" for t, s in secs.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default="outputs/fed-unsup")
    ap.add_argument("--run-config", default="", help="run-config overrides (Flower's syntax)")
    ap.add_argument("--quick", action="store_true", help="the test's tiny size")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if bad or not seeds:
        print(f"fed_unsup: --tasks expects a subset of {TASKS} and --seeds a list of ints, got "
              f"{args.tasks!r} / {args.seeds!r}", file=sys.stderr)
        return 2
    base = {**(QUICK if args.quick else SMALL), **parse_run_config(args.run_config)}
    base.setdefault("cache-dir", str((out / "cache").resolve()))
    for task in tasks:  # every key checked before anything trains
        get_workload(task).check_config(resolve(for_task(base, task)))
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for task in tasks:
            runs += run_task(task, {**base, "seed": seed}, out)
            pd.DataFrame(runs).to_csv(out / "fed_unsup_runs.csv", index=False)
    frame = pd.DataFrame(runs)
    summarise(frame).to_csv(out / "fed_unsup.csv", index=False)
    command = "python -m benchmarks.fed_unsup " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    sites = [n for n in base["reid-clients"].split(",") if n]
    d = {**DEFAULTS, **base}
    note = (f"{len(sites)} sites ({', '.join(sites)}), {d['num-server-rounds']} rounds x "
            f"{d['local-epochs']} local epochs (SGD lr {d['lr']}), {d['reid-model']} at "
            f"{d['reid-height']}x{d['reid-width']}, {d['reid-synthetic-ids']} identities per "
            f"synthetic domain, Theta_g^0 from {d['reid-public']} ({d['pretrain-epochs']} "
            f"epochs); semi-ratio {d['semi-ratio']}, semi-init-rounds {d['semi-init-rounds']}, "
            f"semi-clustering {d['semi-clustering']}, semi-centre-cameras "
            f"{d['semi-centre-cameras']}; unsup-method {d['unsup-method']}, "
            f"unsup-rho {d['unsup-rho']}.")
    (out / "fed_unsup.md").write_text(markdown(frame, sites, command, note))
    print((out / "fed_unsup.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
