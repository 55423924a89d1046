"""Table 7.1's ablation on CPU-sized data: pre-trained, FedAvg, +HN, +contrastive, FedFR, central.

Every federated row runs the same ServerApp/ClientApp (in-process, no Ray) on the same split,
seed and pre-trained model; the central row trains on all identities for as many epochs as a
client trains in the whole federation. Writes ``ablation.csv``, ``ablation.md`` (laid out like
Table 7.1, values in %), ``config.json`` and the split manifest to ``--out``.

    python -m benchmarks.ablation --out outputs/ablation
    python -m benchmarks.ablation --run-config "dataset='folder' data-root='/abs/orl' ..."
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from fedfr.config import resolve
from fedfr.evaluation.run import evaluate_generic, evaluate_personalized_central
from fedfr.report import results_table, table_columns
from fedfr.runtime import configure_threads
from fedfr.training.central import train_central
from fedfr.training.pretrain import load_or_pretrain
from fedfr.workspace import open_workspace
from server.inprocess import DEFAULT_NUM_NODES, parse_run_config, run_inprocess

#: row name -> (label as in Table 7.1, run-config switches)
ROWS: dict[str, tuple[str, dict]] = {
    "fedavg": ("FedAvg", {"strategy": "fedavg", "contrastive": False, "dfc": False}),
    "hn": ("+ HN global data", {"strategy": "fedfr", "hard-negatives": True,
                                "contrastive": False, "dfc": False}),
    "con": ("+ contrastive", {"strategy": "fedfr", "hard-negatives": True,
                              "contrastive": True, "dfc": False}),
    "fedfr": ("FedFR (+ DFC)", {"strategy": "fedfr", "hard-negatives": True,
                                "contrastive": True, "dfc": True}),
}
PAPER = {"num-public-ids": 6000, "num-clients": 40, "ids-per-client": 100, "train-per-id": 60,
         "test-per-id": 40, "image-size": 112, "model": "sphereface64", "num-server-rounds": 30,
         "local-epochs": 4, "lr": 0.001, "batch-size": 256}

log = logging.getLogger("fedfr.benchmarks.ablation")


def run(base: dict, out: Path, rows: list[str], central: bool) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    base = {**base}
    base.setdefault("num-clients", DEFAULT_NUM_NODES)
    results: list[dict] = []
    pretrained = None
    for name in rows:
        label, switches = ROWS[name]
        t0 = time.perf_counter()
        run_dir = out / name
        shutil.rmtree(run_dir, ignore_errors=True)
        report = run_inprocess({**base, **switches, "output-dir": str(run_dir), "resume": False})
        pretrained = pretrained or report["pretrained"]
        final = report["final"]
        results.append({"row": label, "generic": final["generic"],
                        "personalized": final["personalized"],
                        "seconds": time.perf_counter() - t0})
        log.info("%s done in %.0f s", label, time.perf_counter() - t0)
    if central:
        t0 = time.perf_counter()
        cfg = resolve(base)
        ws = open_workspace(cfg)
        backbone0, phi0, _ = load_or_pretrain(cfg, ws)
        backbone = train_central(cfg, ws, backbone0, phi0)
        results.append({"row": "Central, all identities", "generic":
                        evaluate_generic(cfg, ws, backbone), "personalized":
                        evaluate_personalized_central(cfg, ws, backbone),
                        "seconds": time.perf_counter() - t0})
    assert pretrained is not None or not rows
    table_rows = ([{"row": "Pre-trained (public identities)", **pretrained, "seconds": 0.0}]
                  if pretrained else []) + results
    cols = table_columns(table_rows[0])
    records = []
    for r in table_rows:
        rec = {"row": r["row"]}
        for sec, key, title in cols:
            rec[title] = 100.0 * float((r.get(sec) or {}).get(key, float("nan")))
        rec["seconds"] = round(r["seconds"], 1)
        records.append(rec)
    frame = pd.DataFrame(records)
    frame.to_csv(out / "ablation.csv", index=False)
    md = results_table([(r["row"], r) for r in table_rows], first_column="row",
                       extra=("seconds",))
    (out / "ablation.md").write_text(md + "\n")
    cfg = resolve(base).with_clients(base["num-clients"])
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    first = out / rows[0] / "split.json" if rows else None
    if first and first.exists():
        shutil.copy(first, out / "split.json")
    print(md, flush=True)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {list(ROWS)}")
    parser.add_argument("--no-central", action="store_true", help="skip the central upper bound")
    parser.add_argument("--paper", action="store_true", help="the paper's sizes (GPU-scale)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    configure_threads()
    base = {**(PAPER if args.paper else {}), **parse_run_config(args.run_config)}
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {list(ROWS)}")
    run(base, args.out.resolve(), rows, central=not args.no_central)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
