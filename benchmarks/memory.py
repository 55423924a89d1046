"""Memory with scale: driver and actor peak memory of ``flwr run`` for 4, 40 and 100 clients.

The model is fixed (``small_cnn``, d = 512: 6.4 MiB of float32 weights, plus Phi); only the
number of clients (SuperNodes) changes, each with a few private images. Every run goes through
``python -m server.simulate`` (``flwr run``) and is measured with ``benchmarks.procmon``:

- driver: peak resident memory (VmHWM) of the ``flwr-simulation`` process, which runs the
  ServerApp (round loop, strategy, generic evaluation) and the Ray simulation backend;
- actor: the largest peak among the Ray actors that run the ClientApps;
- superlink: the peak of the ``flower-superlink`` process (it relays the messages);
- tree: the largest total resident memory of all processes at one moment.

``bytes/client`` is the least-squares slope of each peak against the number of clients; the
per-client data a process may hold (a client's private images, uint8) is printed next to it, so
growth beyond that bookkeeping stands out.

    python -m benchmarks.memory --out outputs/speed [--clients 4,40,100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.overhead import BEFORE_ENV, prepare, run_flwr
from benchmarks.speed_common import (
    ROOT,
    TINY_WORKLOAD,
    bench_env,
    environment,
    fmt_spread,
    spread,
    write_outputs,
)

CONFIG: dict[str, Any] = {**TINY_WORKLOAD, "embedding-size": 512, "num-server-rounds": 1,
                          "ids-per-client": 2, "train-per-id": 2, "test-per-id": 2,
                          "synthetic-images-per-id": 4, "public-images-per-id": 4}
ROLES = ("driver", "actor", "superlink", "tree")


def peaks(m) -> dict[str, int]:
    superlink = max((p.peak_bytes for p in m.procs.values()
                     if "flower-superlink" in p.cmdline), default=0)
    return {"driver": m.role_peak("driver"), "actor": m.role_peak("actor"),
            "superlink": superlink, "tree": m.tree_peak_bytes}


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (bytes per client)."""
    if len(set(xs)) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "### Peak memory with the number of clients (`flwr run`, fixed model)",
        "",
        f"{env['time_utc']}, {env['host_cpus']} CPUs, FEDFR_NUM_THREADS="
        f"{env['FEDFR_NUM_THREADS'] or '(unset)'}; model {result['model']}; median [min-max] "
        f"MiB of {result['repeats']} repeats; one client's private images: "
        f"{result['client_data_bytes']} bytes.",
        "",
        "| clients | driver MiB | actor MiB (max) | actors | SuperLink MiB | all processes MiB "
        "| wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    mib = 2**-20
    for row in result["rows"]:
        lines.append(
            f"| {row['clients']} | {fmt_spread(row['driver'], mib, 0)} | "
            f"{fmt_spread(row['actor'], mib, 0)} | {row['actors']} | "
            f"{fmt_spread(row['superlink'], mib, 0)} | {fmt_spread(row['tree'], mib, 0)} | "
            f"{fmt_spread(row['wall_s'], 1, 1)} |")
    s = result["bytes_per_client"]
    lines += ["", "Growth per client (least-squares slope over all runs): "
              + ", ".join(f"{r} {s[r] / 1024:.0f} KiB" for r in ROLES) + "."]
    if "before" in result:
        b = result["before"]
        lines += ["", "Before the speed work (same run, `" + " ".join(
            f"{k}={v}" for k, v in BEFORE_ENV.items()) + "`): driver MiB "
            + ", ".join(f"{r['clients']}: {fmt_spread(r['driver'], mib, 0)}" for r in b["rows"])
            + "; growth per client: " + ", ".join(
                f"{r} {b['bytes_per_client'][r] / 1024:.0f} KiB" for r in ROLES) + "."]
    return "\n".join(lines)


def run(out: Path, clients: list[int], repeats: int, threads: int | None,
        cache_dir: Path | None = None, before: bool = False) -> dict[str, Any]:
    work = out / "work-memory"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cache = cache_dir or (out / "cache")
    env = bench_env(threads)
    samples: dict[int, list[dict[str, Any]]] = {n: [] for n in clients}
    before_samples: dict[int, list[dict[str, Any]]] = {n: [] for n in clients}
    variants = [("", env, samples)] + ([("before-", bench_env(threads, BEFORE_ENV),
                                         before_samples)] if before else [])
    for rep, n, (tag, env, store) in ((r, n, v) for r in range(repeats) for n in clients
                                       for v in variants):
        conf = {**CONFIG, "num-clients": n, "cache-dir": str(cache)}
        prepare(conf)
        m, _, _ = run_flwr(f"{tag}c{n}", conf, work, str(rep), env, work / "flwr-home")
        store[n].append({**peaks(m), "wall_s": m.wall_s, "actors": m.role_count("actor"),
                         "timeline": m.timeline()})
        print(f"memory {tag}{n} clients repeat {rep + 1}/{repeats}: driver "
              f"{store[n][-1]['driver'] / 2**20:.0f} MiB, actor "
              f"{store[n][-1]['actor'] / 2**20:.0f} MiB", flush=True)

    def table(store: dict[int, list[dict[str, Any]]]) -> tuple[list[dict], dict[str, float]]:
        rows = []
        for n in clients:
            row: dict[str, Any] = {"clients": n, "actors": store[n][0]["actors"]}
            for key in (*ROLES, "wall_s"):
                row[key] = spread([s[key] for s in store[n]])
            rows.append(row)
        xs = [n for n in clients for _ in store[n]]
        return rows, {r: slope(xs, [s[r] for n in clients for s in store[n]]) for r in ROLES}
    rows, per_client = table(samples)
    size = int(CONFIG["image-size"])
    client_bytes = int(CONFIG["ids-per-client"]) * (int(CONFIG["train-per-id"])
                                                    + int(CONFIG["test-per-id"])) * 3 * size ** 2
    result = {"environment": environment(threads), "repeats": repeats, "config": CONFIG,
              "model": f"{CONFIG.get('model', 'small_cnn')} d={CONFIG['embedding-size']}",
              "client_data_bytes": client_bytes, "rows": rows,
              "bytes_per_client": per_client, "samples": samples}
    if before:
        result["before"] = dict(zip(("rows", "bytes_per_client"), table(before_samples),
                                    strict=True))
        result["before_samples"] = before_samples
    write_outputs(out, "memory", result, markdown(result))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speed")
    parser.add_argument("--clients", default="4,40,100")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--before", action="store_true",
                        help="also measure the pre-optimisation code paths")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    res = run(args.out, [int(c) for c in args.clients.split(",")], args.repeats, args.threads,
              args.cache_dir, args.before)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
