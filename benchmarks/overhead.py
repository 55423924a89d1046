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
import os
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
#: the issue's wall (a)/(b) targets per configuration, and peak memory (a)/(b)
TARGETS = {"small": 1.5, "medium": 1.15}
TARGET_PEAK = 1.5
#: environment of the "before" variant (--before): the code paths as they were before the speed
#: work (every client embeds D_g itself; every model freshly initialised; Flower's 3 s polling;
#: `flwr run` on the repository root, .venv included; Flower's N x M LinkState scan)
BEFORE_ENV = {"FEDFR_FEATURE_CACHE": "off", "FEDFR_FRESH_MODELS": "1",
              "FEDFR_FLOWER_POLLING": "1", "FEDFR_STAGE_APP": "0", "FEDFR_PATCH_FLOWER": "0",
              "FEDFR_FAST_ARRAYS": "0", "FEDFR_TRIM_RAY": "0", "FEDFR_REPLY_ORDER": "arrival"}


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


def run_flwr(name: str, conf: dict[str, Any], work: Path, tag: str, env: dict[str, str],
             home: Path, keep: bool = False, parallel: str = "off"):
    """(a): ``flwr run`` through server.simulate, one client per SuperNode, output and log in
    ``work/<name>-<tag>``; ``keep``: the deployment in ``home`` is left up (and reused when up).
    Returns (measurement, report, output dir). Raises if it failed."""
    out = work / f"{name}-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    fl_conf = {**conf, "num-clients": 0, "output-dir": str(out)}  # one client per SuperNode
    cmd = [sys.executable, "-m", "server.simulate", "--num-supernodes",
           str(conf["num-clients"]), "--flwr-home", str(home), "--parallel", parallel,
           "--run-config", format_run_config(fl_conf)] + (["--keep"] if keep else [])
    m = measure(cmd, env=env, cwd=ROOT, log_path=work / f"{name}-{tag}.log")
    if m.returncode != 0:
        raise RuntimeError(f"{name}: {tag} failed (exit {m.returncode}); "
                           f"see {work}/{name}-{tag}.log")
    report = json.loads((out / "report.json").read_text())
    failed = {k: v for k, v in report.get("failures", {}).items() if v}
    if failed:
        raise RuntimeError(f"{name}: clients failed in {tag}: {failed}")
    return m, report, out


#: start-up phases of a `flwr run` (seconds since the command started, from the process
#: timeline and the report's wall-clock stamps); the plain loop has "loop start" and "exit"
PHASES = ("flwr CLI", "SuperLink", "SuperExec", "simulation process", "Ray", "loop start",
          "first reply", "loop end", "exit")


def phases(m, report: dict[str, Any] | None) -> dict[str, float | None]:
    """When each start-up phase was reached (s after the command started; None: not in this
    run, e.g. no SuperLink start when a kept deployment was reused)."""
    def first(pred) -> float | None:
        seen = [p.first_seen_s for p in m.procs.values()
                if pred(p.cmdline) and not p.preexisting]
        return min(seen) if seen else None

    out: dict[str, float | None] = {
        "flwr CLI": first(lambda c: "bin/flwr run" in c),
        "SuperLink": first(lambda c: "flower-superlink" in c),
        "SuperExec": first(lambda c: "flower-superexec" in c),
        "simulation process": first(lambda c: "flwr-simulation" in c),
        "Ray": first(lambda c: "raylet" in c),
    }
    timing = (report or {}).get("timing", {})
    t0 = timing.get("started_at")
    out["loop start"] = t0 - m.started_at if t0 else None
    fr = timing.get("first_reply_at")
    out["first reply"] = fr - m.started_at if fr else None
    out["loop end"] = (t0 - m.started_at + timing["total_seconds"]) if t0 else None
    out["exit"] = m.wall_s
    return out


def run_pair(name: str, conf: dict[str, Any], work: Path, rep: int,
             threads: int | None, before: bool = False, parallel: str = "off",
             workers: int = 1) -> dict[str, Any]:
    """One repeat, interleaved: (a) on a fresh deployment (``flwr_cold``: SuperLink, SuperExec
    and Ray started for the run, left up afterwards), the plain loop (b), then (a) again on the
    deployment the cold run left up (``flwr``: start-up paid once) [and (a) before the speed
    work, fresh deployment, stopped after]."""
    from server.simulate import stop_deployment

    pl_out = work / f"{name}-plain-{rep}"
    shutil.rmtree(pl_out, ignore_errors=True)
    cmd_b = [sys.executable, "-m", "benchmarks.plain_loop", "--out", str(pl_out),
             "--workers", str(workers),
             "--run-config", format_run_config({**conf, "output-dir": str(pl_out)})]
    home = work / "flwr-home"
    stop_deployment(home)  # the cold run starts its own
    sides: dict[str, Any] = {}
    outs: dict[str, Path] = {}

    def flwr_side(label: str, extra: dict[str, str], keep: bool, fresh: bool) -> None:
        h = work / "flwr-home-before" if fresh else home
        m, report, outs[label] = run_flwr(name, conf, work, f"{label}-{rep}",
                                          bench_env(threads, extra), h, keep, parallel)
        sides[label] = {**m.summary(), "in_run_s": report["timing"]["total_seconds"],
                        "phases": phases(m, report)}

    flwr_side("flwr_cold", {}, keep=True, fresh=False)
    b = measure(cmd_b, env=bench_env(threads), cwd=ROOT, log_path=work / f"{name}-plain-{rep}.log")
    if b.returncode != 0:
        raise RuntimeError(f"{name}: plain loop failed (exit {b.returncode}); see "
                           f"{work}/{name}-plain-{rep}.log")
    flwr_side("flwr", {}, keep=True, fresh=False)
    stop_deployment(home)
    if before:
        flwr_side("flwr_before", BEFORE_ENV, keep=False, fresh=True)
    plain = json.loads((pl_out / "plain.json").read_text())
    sides["plain"] = {**b.summary(), "in_run_s": plain["seconds"],
                      "phases": {"loop start": plain["started_at"] - b.started_at,
                                 "loop end": plain["started_at"] - b.started_at
                                 + plain["seconds"], "exit": b.wall_s}}
    out: dict[str, Any] = dict(sides)
    labels = [k for k in ("flwr", "flwr_cold", "flwr_before") if k in sides]
    for label in labels:
        a = sides[label]
        key = "ratio" if label == "flwr" else f"ratio_{label}"
        out[key] = {"wall": a["wall_s"] / b.wall_s, "cpu": a["cpu_s"] / b.cpu_s,
                    "peak_memory": a["tree_peak_bytes"] / b.tree_peak_bytes,
                    "in_run": a["in_run_s"] / plain["seconds"]}
    out["max_abs_model_difference"] = max(
        _max_diff(outs[label] / "final_model.pt", pl_out / "final_model.pt")
        for label in labels)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(side: str, key: str) -> dict[str, float]:
        return spread([r[side][key] for r in runs])
    keys = ("wall_s", "cpu_s", "tree_peak_bytes", "in_run_s")
    rkeys = ("wall", "cpu", "peak_memory", "in_run")
    sides = [s for s in ("flwr", "flwr_cold", "flwr_before", "plain") if s in runs[0]]
    out: dict[str, Any] = {side: {k: col(side, k) for k in keys} for side in sides}
    for rk in ("ratio", "ratio_flwr_cold", "ratio_flwr_before"):
        if rk in runs[0]:
            out[rk] = {k: col(rk, k) for k in rkeys}
    for side in sides:
        ph = {}
        for k in PHASES:
            vals = [r[side]["phases"].get(k) for r in runs]
            vals = [v for v in vals if v is not None]
            ph[k] = spread(vals) if vals else None
        out[side]["phases"] = ph
        roles = sorted({role for r in runs for role in r[side]["roles"]})
        out[side]["roles"] = {role: {
            k: spread([r[side]["roles"].get(role, {}).get(k, 0) for r in runs])
            for k in ("processes", "peak_bytes", "cpu_s")} for role in roles}
    out["max_abs_model_difference"] = max(r["max_abs_model_difference"] for r in runs)
    return out


def _cell(s: dict[str, float] | None, digits: int = 1) -> str:
    return "-" if s is None else f"{s['median']:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    par = result.get("parallel", {"actors": 1, "threads": env["FEDFR_NUM_THREADS"] or "-"})
    lines = [
        "### Framework overhead: `flwr run` (a) vs a plain PyTorch loop (b)",
        "",
        f"{env['time_utc']}, {env['host_cpus']} CPUs, load average "
        f"{env['load_average_1_5_15'][0]:.1f} at the start, "
        f"{result.get('load_end', [float('nan')])[0]:.1f} at the end; (a) with "
        f"{par['actors']} Ray actor(s) x {par['threads']} torch thread(s), (b) with "
        f"{par['actors']} process(es) x {par['threads']} thread(s); median [min-max] of "
        f"{result['repeats']} interleaved repeats; target (a)/(b) wall <= "
        f"{TARGETS['small']} (small), {TARGETS['medium']} (medium).",
        "",
        "| config | clients x rounds | wall (a) s | wall (b) s | **wall (a)/(b)** | "
        "in-run (a)/(b) | CPU (a)/(b) | peak MiB (a) | peak MiB (b) | **peak (a)/(b)** | "
        "model diff | cold: wall (a)/(b) | before: wall (a)/(b) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"**{fmt_spread(s['ratio']['peak_memory'])}** | "
            f"{s['max_abs_model_difference']:.1e} | "
            + (f"{fmt_spread(s['ratio_flwr_cold']['wall'])} | " if "ratio_flwr_cold" in s
               else "- | ")
            + (f"{fmt_spread(s['ratio_flwr_before']['wall'])} |"
               if "ratio_flwr_before" in s else "- |"))
    lines += ["", "(a) = `python -m server.simulate --keep` on the deployment (SuperLink + "
              "SuperExec) a previous run left up; cold = the same on a fresh deployment "
              "(everything started for the run); wall/CPU/peak cover every process of each "
              "command (SuperLink, Ray, actors included); in-run = inside the round loop only; "
              "model diff = max |a - b| over the final global models (0 = the same training); "
              "before = (a) with `FEDFR_FEATURE_CACHE=off FEDFR_FRESH_MODELS=1 "
              "FEDFR_FLOWER_POLLING=1 FEDFR_STAGE_APP=0 FEDFR_PATCH_FLOWER=0 "
              "FEDFR_FAST_ARRAYS=0 FEDFR_TRIM_RAY=0 FEDFR_REPLY_ORDER=arrival` (the code paths "
              "before the speed work), in the same run."]
    for name, s in result["summary"].items():
        lines += ["", f"**Start-up phases, {name}** (s after the command started, median; "
                  "'-': not in this run):", "",
                  "| run | " + " | ".join(PHASES) + " |",
                  "|---|" + "---:|" * len(PHASES)]
        for side, label in (("flwr_cold", "(a) cold deployment"), ("flwr", "(a) kept deployment"),
                            ("flwr_before", "(a) before"), ("plain", "(b) plain loop")):
            if side in s:
                lines.append(f"| {label} | " + " | ".join(
                    _cell(s[side]["phases"].get(k)) for k in PHASES) + " |")
        lines += ["", f"**Processes, {name}** (peak MiB of the largest process of the role, "
                  "CPU s summed over the role, median):", "",
                  "| run | " + " | ".join(f"{r} (n, MiB, CPU s)" for r in ROLE_ORDER) + " |",
                  "|---|" + "---|" * len(ROLE_ORDER)]
        for side, label in (("flwr_cold", "(a) cold"), ("flwr", "(a) kept"), ("plain", "(b)")):
            if side not in s:
                continue
            cells = []
            for role in ROLE_ORDER:
                r = s[side]["roles"].get(role)
                cells.append("-" if r is None or not r["processes"]["median"] else
                             f"{r['processes']['median']:.0f}, "
                             f"{r['peak_bytes']['median'] / 2**20:.0f}, "
                             f"{r['cpu_s']['median']:.1f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ROLE_ORDER = ("driver", "actor", "flower", "ray", "other")


def parallel_plan(conf: dict[str, Any], parallel: str, threads: int | None) -> tuple[int, int]:
    """(actors, threads) of ``--parallel`` for ``conf`` (server.simulate's own rule)."""
    from server.simulate import plan_parallel, usable_cores

    if parallel == "off":
        return 1, threads or 0
    actors, t = plan_parallel(usable_cores(), int(conf["num-clients"]),
                              str(conf.get("model", "small_cnn")), threads)
    return (actors if parallel == "auto" else int(parallel)), t


def run(out: Path, configs: list[str], repeats: int, threads: int | None,
        cache_dir: Path | None = None, before: bool = False,
        parallel: str = "off") -> dict[str, Any]:
    cache = cache_dir or (out / "cache")
    result: dict[str, Any] = {"environment": environment(threads), "repeats": repeats,
                              "configs": {}, "runs": {}, "summary": {}}
    work = out / "work-overhead"  # logs and run outputs of the last run (replaced each run)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in configs:
        conf = {**CONFIGS[name], "cache-dir": str(cache)}
        result["configs"][name] = conf
        prepare(conf)
        actors, t = parallel_plan(conf, parallel, threads)
        result["parallel"] = {"mode": parallel, "actors": actors, "threads": t or "-"}
        runs = []
        for rep in range(repeats):
            r = run_pair(name, conf, work, rep, t or threads, before, parallel, actors)
            print(f"overhead {name} repeat {rep + 1}/{repeats}: wall {r['flwr']['wall_s']:.1f}"
                  f" s (cold {r['flwr_cold']['wall_s']:.1f} s) vs {r['plain']['wall_s']:.1f} s "
                  f"(ratio {r['ratio']['wall']:.2f})", flush=True)
            runs.append(r)
        result["runs"][name] = runs
        result["summary"][name] = summarise(runs)
    result["load_end"] = list(os.getloadavg())
    write_outputs(out, "overhead", result, markdown(result))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--configs", default="small,medium", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="FEDFR_NUM_THREADS for both sides (default: unset, the defaults; "
                             "with --parallel: the plan's threads per actor)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--before", action="store_true",
                        help="also run (a) with the pre-optimisation code paths")
    parser.add_argument("--parallel", default="off",
                        help="off | auto | N: Ray actors for (a), the same number of processes "
                             "for (b) (server.simulate --parallel, plain_loop --workers)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    res = run(args.out, [c for c in args.configs.split(",") if c], args.repeats, args.threads,
              args.cache_dir, args.before, args.parallel)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
