"""The issue's speed targets in one run: ``make bench-speed``.

Runs, one after another (each times itself; never two at once):

1. ``benchmarks.overhead`` (small: 4 clients x 3 rounds, medium: 40 x 2) with clients in
   parallel where the cores allow (``--parallel auto``: Ray actors x torch threads from the
   cores and the model; the plain loop gets as many worker processes), each repeat interleaved:
   (a) on a fresh deployment, (b) the plain loop, (a) again on the deployment kept up;
2. the ablation command (``benchmarks.ablation``, 4 federated rows, small workload, in-process)
   under ``benchmarks.procmon``: its total wall time against the sum of its rows' in-run times;
3. ``benchmarks.speed_steps``: one client round inside the actor, step by step;
4. ``benchmarks.speed_ray``: Ray's start-up by setting;

and writes ``speed-targets.md`` (+ ``.json``): the targets table (met or not, with the measured
value) and, for what is not met, what each remaining part costs (start-up before the round loop,
in-run difference, shut-down, framework steps inside the actor). About 8-10 min on 2 quiet cores.

    python -m benchmarks.speed_targets --out outputs/speed [--repeats 2] [--parallel auto]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import overhead, speed_ray, speed_steps
from benchmarks.procmon import measure
from benchmarks.speed_common import ROOT, bench_env, environment, write_outputs
from server.inprocess import format_run_config

ABLATION_ROWS = ("fedavg", "hn", "con", "fedfr")
TARGET_ABLATION = 1.2


def run_ablation(out: Path, cache: Path) -> dict[str, Any]:
    """The ablation command on the small workload: total wall vs the sum of its rows' in-run."""
    conf = {**overhead.CONFIGS["small"], "cache-dir": str(cache)}
    work = out / "work-ablation"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, "-m", "benchmarks.ablation", "--out", str(work), "--no-central",
           "--rows", ",".join(ABLATION_ROWS), "--run-config", format_run_config(conf)]
    m = measure(cmd, env=bench_env(1), cwd=ROOT, log_path=out / "ablation-run.log")
    if m.returncode != 0:
        raise RuntimeError(f"ablation failed (exit {m.returncode}); see {out}/ablation-run.log")
    in_run = {row: json.loads((work / row / "report.json").read_text())["timing"]
              ["total_seconds"] for row in ABLATION_ROWS}
    total = sum(in_run.values())
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "rows_in_run_s": in_run,
            "sum_in_run_s": total, "ratio": m.wall_s / total,
            "outside_rows_s": m.wall_s - total}


def _med(s: dict[str, Any] | None) -> float | None:
    return None if s is None else s["median"]


def remaining_parts(summary: dict[str, Any]) -> dict[str, float | None]:
    """(a) - (b) split into start-up (command start -> round loop), in-run, shut-down (loop
    end -> exit), medians in seconds."""
    a, b = summary["flwr"]["phases"], summary["plain"]["phases"]

    def span(ph, lo, hi):
        x, y = _med(ph.get(hi)) if hi else 0.0, _med(ph.get(lo)) if lo else 0.0
        return None if x is None or y is None else x - y
    parts = {"start-up": (span(a, None, "loop start"), span(b, None, "loop start")),
             "in-run": (_med(summary["flwr"]["in_run_s"]), _med(summary["plain"]["in_run_s"])),
             "shut-down": (span(a, "loop end", "exit"), span(b, "loop end", "exit"))}
    return {k: (None if x is None or y is None else x - y) for k, (x, y) in parts.items()} | {
        f"{k} (a)": x for k, (x, _) in parts.items()} | {f"{k} (b)": y for k, (_, y) in
                                                          parts.items()}


def markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    ov = res["overhead"]["summary"]
    rows = []

    def row(target: str, value: float | None, limit: float, fmt: str = "{:.2f}") -> None:
        met = "-" if value is None else ("**met**" if value <= limit else "not met")
        rows.append(f"| {target} | {'-' if value is None else fmt.format(value)} | "
                    f"<= {limit} | {met} |")
    for name, limit in (("medium", overhead.TARGETS["medium"]),
                        ("small", overhead.TARGETS["small"])):
        if name in ov:
            conf = res["overhead"]["configs"][name]
            row(f"wall (a)/(b), {conf['num-clients']} clients (kept deployment)",
                _med(ov[name]["ratio"]["wall"]), limit)
    if res.get("ablation"):
        row("ablation: total wall / sum of rows' in-run", res["ablation"]["ratio"],
            TARGET_ABLATION)
    peaks = [_med(s["ratio"]["peak_memory"]) for s in ov.values()]
    row("peak memory (a)/(b), worst config", max(peaks) if peaks else None,
        overhead.TARGET_PEAK)
    for name, s in ov.items():  # not a target: the cost that does not depend on the load
        rows.append(f"| CPU time (a)/(b), {res['overhead']['configs'][name]['num-clients']} "
                    f"clients (every process) | {_med(s['ratio']['cpu']):.2f} | - | "
                    "(information) |")
    diff = max((s["max_abs_model_difference"] for s in ov.values()), default=None)
    par = res["overhead"].get("parallel", {})
    lines = [
        "## Speed targets (issue 17)", "",
        f"`{res['command']}`: {res['seconds']:.0f} s; {env['time_utc']}, {env['host_cpus']} "
        f"CPUs, load average {env['load_average_1_5_15'][0]:.1f} at the start and "
        f"{res['load_end'][0]:.1f} at the end (the machine was shared: absolute times are "
        f"inflated, both sides of each ratio ran interleaved in the same run); clients in "
        f"parallel: {par.get('actors', '-')} Ray actor(s) x {par.get('threads', '-')} "
        "thread(s), the plain loop with as many processes.", "",
        *([f"**Caution**: the load average ({env['load_average_1_5_15'][0]:.0f}) exceeded the "
           f"{env['host_cpus']} cores: the scheduler shares the CPUs among runnable processes, "
           "so the side with more processes (Ray actors + driver vs the plain loop's workers) "
           "gets a larger share and the wall ratios flatter (a); the CPU ratio does not depend "
           "on that. Rerun on a quiet machine for the wall targets.", ""]
          if env["load_average_1_5_15"][0] > (env["host_cpus"] or 1) else []),
        "| target | measured | limit | |", "|---|---:|---:|---|", *rows,
        f"| final model (a) vs (b), max abs difference | {diff:.1e} | 0 (same order of "
        "summation) | " + ("**met**" if diff == 0 else "not met") + " |"
        if diff is not None else "", "",
        "**What the remaining gap is made of** ((a) - (b), seconds, median; (a) on the kept "
        "deployment):", "",
        "| config | start-up (a) | start-up (b) | in-run (a) | in-run (b) | shut-down (a) | "
        "shut-down (b) | total (a) - (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in ov.items():
        p = remaining_parts(s)

        def f(k: str, p: dict[str, float | None] = p) -> str:
            return "-" if p.get(k) is None else f"{p[k]:.1f}"
        lines.append(f"| {name} | {f('start-up (a)')} | {f('start-up (b)')} | "
                     f"{f('in-run (a)')} | {f('in-run (b)')} | {f('shut-down (a)')} | "
                     f"{f('shut-down (b)')} | "
                     f"{_med(s['flwr']['wall_s']) - _med(s['plain']['wall_s']):.1f} |")
    if res.get("steps"):
        st = res["steps"]["summary"]["fast"]
        lines += ["", f"Inside the actor (speed_steps): the framework's steps of a client round "
                  f"(Ray (de)serialisation, setup, array conversion, state I/O) take "
                  f"{1e3 * st['framework']:.1f} ms against {1e3 * st['train']:.0f} ms of "
                  f"training ({100 * st['framework'] / st['train']:.1f} %)."]
    if res.get("ablation"):
        ab = res["ablation"]
        lines += ["", f"Ablation ({len(ab['rows_in_run_s'])} rows, in-process): "
                  f"{ab['wall_s']:.1f} s in all, {ab['sum_in_run_s']:.1f} s inside the rows' "
                  f"round loops, {ab['outside_rows_s']:.1f} s outside (imports, data, tables, "
                  "plots)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", default="small,medium")
    parser.add_argument("--parallel", default="auto", help="off | auto | N (see overhead)")
    parser.add_argument("--skip", default="", help="comma list of: ablation,steps,ray")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    cache = out / "cache"
    skip = set(args.skip.split(","))
    t0 = time.perf_counter()
    given = argv if argv is not None else sys.argv[1:]
    res: dict[str, Any] = {"environment": environment(1),
                           "command": " ".join(["python -m benchmarks.speed_targets", *given])}
    res["overhead"] = overhead.run(out, [c for c in args.configs.split(",") if c], args.repeats,
                                   1, cache, parallel=args.parallel)
    if "ablation" not in skip:
        res["ablation"] = run_ablation(out, cache)
    if "steps" not in skip:
        res["steps"] = speed_steps.run(out, 1, cache)
    if "ray" not in skip:
        res["ray"] = speed_ray.run(out, 1)
    res["seconds"] = time.perf_counter() - t0
    res["load_end"] = list(os.getloadavg())
    md = markdown(res)
    parts = [md, (out / "overhead.md").read_text()]
    for name in ("speed_steps", "speed_ray"):
        if (out / f"{name}.md").exists() and name.split("_")[1] not in skip:
            parts.append((out / f"{name}.md").read_text())
    write_outputs(out, "speed-targets", res, "\n\n".join(parts))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
