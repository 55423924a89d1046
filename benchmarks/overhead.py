"""Framework overhead: the same FedFR workload through ``flwr run`` and as a plain PyTorch loop.

For each configuration (``small``: 4 clients, ``medium``: 40 clients; tiny model and data, since
the point is the framework's cost) and each repeat, back to back in this run:

(a) ``python -m server.simulate --num-supernodes C`` (``flwr run . --stream`` with its own
    FLWR_HOME, the local SuperLink started and stopped, the Ray simulation engine), and
(b) ``python -m benchmarks.plain_loop`` (one process, ``fedfr`` only: the same local training,
    averaging and evaluations, same seeds),

each measured with ``benchmarks.procmon`` over its whole process tree: wall time, CPU time
(user + system of every process) and peak memory (largest sum of resident memory). The ratio
(a)/(b) is taken per repeat; the table shows median [min-max]. ``in-run`` is the time inside the
round loop (``report.json`` timing / the plain loop's own clock), so wall - in-run is start-up
and shut-down. The two final models are compared (max |difference|) to show the workloads match.
Data and the pre-trained model are prepared (cached) before anything is timed.

    python -m benchmarks.overhead --out outputs/speed [--configs small,medium] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.procmon import measure
from benchmarks.speed_common import (
    ROOT,
    TINY_WORKLOAD,
    bench_env,
    environment,
    fmt_spread,
    spread,
    write_outputs,
)
from server.inprocess import format_run_config

CONFIGS: dict[str, dict[str, Any]] = {
    "small": {**TINY_WORKLOAD, "num-clients": 4, "num-server-rounds": 3},
    "medium": {**TINY_WORKLOAD, "num-clients": 40, "num-server-rounds": 2,
               "ids-per-client": 2, "train-per-id": 4, "test-per-id": 2,
               "public-images-per-id": 4},
}
TARGET_RATIO = 1.15
#: environment of the "before" variant (--before): the code paths as they were before the speed
#: work (every client embeds D_g itself; every model freshly initialised; Flower's 3 s polling;
#: `flwr run` on the repository root, .venv included; Flower's N x M LinkState scan)
BEFORE_ENV = {"FEDFR_FEATURE_CACHE": "off", "FEDFR_FRESH_MODELS": "1",
              "FEDFR_FLOWER_POLLING": "1", "FEDFR_STAGE_APP": "0", "FEDFR_PATCH_FLOWER": "0"}


def prepare(conf: dict[str, Any]) -> None:
    """Render the synthetic data and pre-train Theta_g^0 into the cache (not timed)."""
    from fedfr.config import resolve
    from fedfr.face.training.pretrain import load_or_pretrain
    from fedfr.face.workspace import open_workspace

    cfg = resolve(conf)
    load_or_pretrain(cfg, open_workspace(cfg))


def _max_diff(a_path: Path, b_path: Path) -> float:
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    if sorted(a) != sorted(b):
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def run_flwr(name: str, conf: dict[str, Any], work: Path, tag: str, env: dict[str, str]):
    """(a): ``flwr run`` through server.simulate, one client per SuperNode, output and log in
    ``work/<name>-<tag>``; returns (measurement, report, output dir). Raises if it failed."""
    out = work / f"{name}-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    fl_conf = {**conf, "num-clients": 0, "output-dir": str(out)}  # one client per SuperNode
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes",
           str(conf["num-clients"]), "--flwr-home", str(work / "flwr-home"),
           "--run-config", format_run_config(fl_conf)]
    m = measure(cmd, env=env, cwd=ROOT, log_path=work / f"{name}-{tag}.log")
    if m.returncode != 0:
        raise RuntimeError(f"{name}: {tag} failed (exit {m.returncode}); "
                           f"see {work}/{name}-{tag}.log")
    report = json.loads((out / "report.json").read_text())
    failed = {k: v for k, v in report.get("failures", {}).items() if v}
    if failed:
        raise RuntimeError(f"{name}: clients failed in {tag}: {failed}")
    return m, report, out


def run_pair(name: str, conf: dict[str, Any], work: Path, rep: int,
             threads: int | None, before: bool = False) -> dict[str, Any]:
    """One repeat of (a) [and (a) before the speed work] and (b) for one configuration."""
    pl_out = work / f"{name}-plain-{rep}"
    shutil.rmtree(pl_out, ignore_errors=True)
    cmd_b = [sys.executable, "-m", "benchmarks.plain_loop", "--out", str(pl_out),
             "--run-config", format_run_config({**conf, "output-dir": str(pl_out)})]
    variants = [("flwr", {})] + ([("flwr_before", BEFORE_ENV)] if before else [])
    sides: dict[str, Any] = {}
    outs: dict[str, Path] = {}
    for label, extra in variants:
        m, report, outs[label] = run_flwr(name, conf, work, f"{label}-{rep}",
                                       bench_env(threads, extra))
        sides[label] = {**m.summary(), "in_run_s": report["timing"]["total_seconds"]}
    b = measure(cmd_b, env=bench_env(threads), cwd=ROOT, log_path=work / f"{name}-plain-{rep}.log")
    if b.returncode != 0:
        raise RuntimeError(f"{name}: plain loop failed (exit {b.returncode}); see "
                           f"{work}/{name}-plain-{rep}.log")
    plain = json.loads((pl_out / "plain.json").read_text())
    sides["plain"] = {**b.summary(), "in_run_s": plain["seconds"]}
    out: dict[str, Any] = dict(sides)
    for label, _ in variants:
        a = sides[label]
        key = "ratio" if label == "flwr" else f"ratio_{label}"
        out[key] = {"wall": a["wall_s"] / b.wall_s, "cpu": a["cpu_s"] / b.cpu_s,
                    "peak_memory": a["tree_peak_bytes"] / b.tree_peak_bytes,
                    "in_run": a["in_run_s"] / plain["seconds"]}
    out["max_abs_model_difference"] = max(
        _max_diff(outs[label] / "final_model.pt", pl_out / "final_model.pt")
        for label, _ in variants)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(side: str, key: str) -> dict[str, float]:
        return spread([r[side][key] for r in runs])
    keys = ("wall_s", "cpu_s", "tree_peak_bytes", "in_run_s")
    rkeys = ("wall", "cpu", "peak_memory", "in_run")
    out: dict[str, Any] = {side: {k: col(side, k) for k in keys}
                           for side in ("flwr", "flwr_before", "plain") if side in runs[0]}
    for rk in ("ratio", "ratio_flwr_before"):
        if rk in runs[0]:
            out[rk] = {k: col(rk, k) for k in rkeys}
    out["max_abs_model_difference"] = max(r["max_abs_model_difference"] for r in runs)
    return out


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "### Framework overhead: `flwr run` (a) vs a plain PyTorch loop (b)",
        "",
        f"{env['time_utc']}, {env['host_cpus']} CPUs, load average "
        f"{env['load_average_1_5_15'][0]:.1f} at the start, FEDFR_NUM_THREADS="
        f"{env['FEDFR_NUM_THREADS'] or '(unset)'}; median [min-max] of {result['repeats']} "
        f"repeats; target (a)/(b) wall <= {TARGET_RATIO}.",
        "",
        "| config | clients x rounds | wall (a) s | wall (b) s | **wall (a)/(b)** | "
        "in-run (a)/(b) | CPU (a)/(b) | peak MiB (a) | peak MiB (b) | model diff | "
        "before: wall (a)/(b) | before: in-run (a)/(b) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["summary"].items():
        conf = result["configs"][name]
        lines.append(
            f"| {name} | {conf['num-clients']} x {conf['num-server-rounds']} | "
            f"{fmt_spread(s['flwr']['wall_s'], digits=1)} | "
            f"{fmt_spread(s['plain']['wall_s'], digits=1)} | "
            f"**{fmt_spread(s['ratio']['wall'])}** | {fmt_spread(s['ratio']['in_run'])} | "
            f"{fmt_spread(s['ratio']['cpu'])} | "
            f"{fmt_spread(s['flwr']['tree_peak_bytes'], 2**-20, 0)} | "
            f"{fmt_spread(s['plain']['tree_peak_bytes'], 2**-20, 0)} | "
            f"{s['max_abs_model_difference']:.1e} | "
            + (f"{fmt_spread(s['ratio_flwr_before']['wall'])} | "
               f"{fmt_spread(s['ratio_flwr_before']['in_run'])} |"
               if "ratio_flwr_before" in s else "- | - |"))
    lines += ["", "wall/CPU/peak cover every process of each command (SuperLink, Ray, actors "
              "included); in-run = inside the round loop only; model diff = max |a - b| over the "
              "final global models (0 = the same training); before = (a) with "
              "`FEDFR_FEATURE_CACHE=off FEDFR_FRESH_MODELS=1 FEDFR_FLOWER_POLLING=1 "
              "FEDFR_STAGE_APP=0 FEDFR_PATCH_FLOWER=0` (the code "
              "paths before the speed "
              "work), in the same run."]
    return "\n".join(lines)


def run(out: Path, configs: list[str], repeats: int, threads: int | None,
        cache_dir: Path | None = None, before: bool = False) -> dict[str, Any]:
    cache = cache_dir or (out / "cache")
    result: dict[str, Any] = {"environment": environment(threads), "repeats": repeats,
                              "configs": {}, "runs": {}, "summary": {}}
    work = out / "work-overhead"  # logs and run outputs of the last run (replaced each run)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if True:
        for name in configs:
            conf = {**CONFIGS[name], "cache-dir": str(cache)}
            result["configs"][name] = conf
            prepare(conf)
            runs = []
            for rep in range(repeats):
                r = run_pair(name, conf, work, rep, threads, before)
                print(f"overhead {name} repeat {rep + 1}/{repeats}: wall {r['flwr']['wall_s']:.1f}"
                      f" s vs {r['plain']['wall_s']:.1f} s (ratio {r['ratio']['wall']:.2f})",
                      flush=True)
                runs.append(r)
            result["runs"][name] = runs
            result["summary"][name] = summarise(runs)
    write_outputs(out, "overhead", result, markdown(result))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--configs", default="small,medium", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="FEDFR_NUM_THREADS for both sides (default: unset, the defaults)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--before", action="store_true",
                        help="also run (a) with the pre-optimisation code paths")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    res = run(args.out, [c for c in args.configs.split(",") if c], args.repeats, args.threads,
              args.cache_dir, args.before)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
