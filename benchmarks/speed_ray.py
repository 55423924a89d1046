"""What each Ray setting costs: start one Ray node, one actor, one call, stop; per variant.

The simulation engine starts Ray inside ``flwr-simulation`` with ``ray.init(**init_args)``
(Flower's backend options: ``init_args_num_cpus``, ``init_args_logging_level``,
``init_args_log_to_driver``; ``include_dashboard`` defaults to False) and the raylet reads
``RAY_<flag>`` settings from the environment it inherits. Each variant below is one fresh
process doing what the engine does - ``ray.init``, one actor that imports torch (as the
ClientApp actor does), one call, ``ray.shutdown`` - measured over its whole process tree with
``benchmarks.procmon`` (wall, CPU of every process, peak memory, number of processes), the
variants interleaved, ``--repeats`` times each:

- ``flower-default``: Flower 1.42's ray.init (dashboard off, logging WARNING, log to driver);
- ``no-log-to-driver``: + ``log_to_driver=False`` (backend option ``init-args-log-to-driver``);
- ``no-prestart``: + ``RAY_prestart_worker_first_driver=0`` and
  ``RAY_enable_worker_prestart=0`` (no idle workers started ahead of the actor);
- ``no-usage-stats``: + ``RAY_USAGE_STATS_ENABLED=0``;
- ``trimmed``: all of the above (``server.simulate`` sets the environment ones; the log setting
  only with ``FEDFR_RAY_QUIET=1``).

    python -m benchmarks.speed_ray --out outputs/speed --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.procmon import measure
from benchmarks.speed_common import ROOT, bench_env, environment, write_outputs

#: the environment settings server.simulate gives Ray (see server/simulate.py RAY_TRIM_ENV)
NO_PRESTART = {"RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0"}
NO_USAGE = {"RAY_USAGE_STATS_ENABLED": "0"}
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "flower-default": ({"log_to_driver": True}, {}),
    "no-log-to-driver": ({"log_to_driver": False}, {}),
    "no-prestart": ({"log_to_driver": True}, NO_PRESTART),
    "no-usage-stats": ({"log_to_driver": True}, NO_USAGE),
    "trimmed": ({"log_to_driver": False}, {**NO_PRESTART, **NO_USAGE}),
}
SCRIPT = """
import sys, time
import ray
t0 = time.perf_counter()
ray.init(include_dashboard=False, logging_level="WARNING", num_cpus={num_cpus},
         log_to_driver={log_to_driver})
t1 = time.perf_counter()

@ray.remote(num_cpus=1)
class Actor:
    def __init__(self):
        import torch  # noqa: F401 - as the ClientApp actor does
    def call(self):
        return 1

a = Actor.remote()
ray.get(a.call.remote())
t2 = time.perf_counter()
ray.shutdown()
t3 = time.perf_counter()
print(f"PHASES {{t1 - t0:.3f}} {{t2 - t1:.3f}} {{t3 - t2:.3f}}")
"""


def run(out: Path, repeats: int, num_cpus: int = 2) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    work = out / "work-ray"
    work.mkdir(parents=True, exist_ok=True)
    for rep in range(repeats):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            init, env = VARIANTS[name]
            code = SCRIPT.format(num_cpus=num_cpus, **init)
            log = work / f"{name}-{rep}.log"
            m = measure([sys.executable, "-c", code], env=bench_env(1, env), cwd=ROOT,
                        log_path=log)
            if m.returncode != 0:
                raise RuntimeError(f"speed_ray {name}: exit {m.returncode}; see {log}")
            line = [ln for ln in log.read_text().splitlines() if ln.startswith("PHASES")][-1]
            init_s, actor_s, stop_s = (float(x) for x in line.split()[1:])
            idle = sum(1 for p in m.procs.values() if "ray::IDLE" in p.cmdline
                       and p.peak_bytes < 300 * 2**20)
            samples[name].append({"wall_s": m.wall_s, "cpu_s": m.cpu_s,
                                  "peak_mib": m.tree_peak_bytes / 2**20,
                                  "processes": len(m.procs), "idle_workers": idle,
                                  "init_s": init_s, "actor_s": actor_s, "shutdown_s": stop_s})
            print(f"speed_ray {name} {rep + 1}/{repeats}: wall {m.wall_s:.1f} s, "
                  f"CPU {m.cpu_s:.1f} s, {len(m.procs)} processes", flush=True)
    summary = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
               for name, rows in samples.items()}
    result = {"environment": environment(1), "repeats": repeats, "num_cpus": num_cpus,
              "samples": samples, "summary": summary}
    write_outputs(out, "speed_ray", result, markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    env, s = result["environment"], result["summary"]
    base = s["flower-default"]
    lines = ["### Ray start-up by setting (one node, one torch actor, one call, shut-down)", "",
             f"{env['time_utc']}, {env['host_cpus']} CPUs, load average "
             f"{env['load_average_1_5_15'][0]:.1f}; median of {result['repeats']} interleaved "
             "repeats; `python -m benchmarks.speed_ray`.", "",
             "| variant | wall s | CPU s | CPU vs default | processes | idle workers | "
             "peak MiB | ray.init s | actor + call s | shut-down s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in s.items():
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['cpu_s'] - base['cpu_s']:+.1f} | {r['processes']:.0f} | "
                     f"{r['idle_workers']:.0f} | {r['peak_mib']:.0f} | {r['init_s']:.2f} | "
                     f"{r['actor_s']:.2f} | {r['shutdown_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(markdown(run(args.out, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
