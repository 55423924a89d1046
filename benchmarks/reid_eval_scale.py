"""Re-ID evaluation at Market-1501's size: features -> CMC/mAP and re-ranking against the product.

Synthetic features shaped like Market's test set (3,368 queries, 15,913 gallery images of which
2,793 are pid-0 distractors, 750 identities over 6 cameras, 2,048-d): identity centres plus a
camera offset plus noise, so rankings are neither perfect nor chance. Measured side by side in
one process, each phase repeated:

- (a) ``floor``: the (Q, G) distance-matrix product alone, ``qf @ gf.T`` in one call;
- (b) ``features_to_rank``: features -> squared-Euclidean distances -> CMC / mAP / mINP
  (``fedfr.reid.evaluation.features_to_rank``, query chunks, nothing (Q, G) kept);
- (b2) ``evaluate_rank`` on a precomputed (Q, G) matrix (ranking alone);
- (c) ``re_ranking`` (k1 = 20, k2 = 6, lambda = 0.3) from the features, then ``evaluate_rank``;
- (c2) ``reranked_rank``: the same numbers without holding the (Q, G) re-ranked matrix.

Reported: wall and CPU seconds (medians and ranges over repeats), (b)/(a) and (c)/(a), peak
resident memory of the process during each phase (VmHWM reset before it via
/proc/self/clear_refs; "above start" subtracts the resident set at the phase's start), and the
load average before and after (the machine is shared: read the ratios, not the seconds).

    FEDFR_NUM_THREADS=1 nice -n 5 python -m benchmarks.reid_eval_scale --out outputs/reid_eval
    FEDFR_NUM_THREADS=1 python -m benchmarks.reid_eval_scale --quick --out /tmp/q
"""

from __future__ import annotations

import os
import sys

if os.environ.get("FEDFR_NUM_THREADS"):  # before numpy / torch load their thread pools
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, os.environ["FEDFR_NUM_THREADS"])

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.procmon import reset_peak, self_status_bytes  # noqa: E402
from fedfr.reid.evaluation import (  # noqa: E402
    evaluate_rank,
    features_to_rank,
    re_ranking,
    reranked_rank,
)
from fedfr.runtime import configure_threads  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "market": {"queries": 3368, "gallery": 15913, "distractors": 2793, "ids": 750, "cams": 6,
               "dim": 2048, "noise": 2.9, "repeats": 3, "rerank_repeats": 1},
    "quick": {"queries": 300, "gallery": 1500, "distractors": 260, "ids": 70, "cams": 6,
              "dim": 256, "noise": 1.8, "repeats": 2, "rerank_repeats": 1},
}


# --- data -----------------------------------------------------------------------------------
def market_like(p: dict[str, Any], seed: int = 0, cam_shift: float = 0.35) -> dict[str, Any]:
    """Features and labels shaped like Market-1501's query / gallery (float32, unnormalised).

    ``p["noise"]`` (noise norm over centre norm) is set per preset so that mAP lands between
    0.5 and 0.9, as a trained model's would, and the hardest matches sit deep in the ranking.
    """
    rng = np.random.default_rng(seed)
    noise = p["noise"]
    nq, ng, nd, ids, cams, dim = (p[k] for k in ("queries", "gallery", "distractors", "ids",
                                                 "cams", "dim"))
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, ids + 1, ng - nd), np.zeros(nd, np.int64)])
    q_cams, g_cams = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    centres = rng.standard_normal((ids + 1 + nd, dim), dtype=np.float32) / np.sqrt(dim)
    offsets = rng.standard_normal((cams, dim), dtype=np.float32) * (cam_shift / np.sqrt(dim))
    # each distractor is its own "identity" centre (pid 0 is not one person)
    g_centre = np.where(g_pids > 0, g_pids, ids + 1 + np.arange(ng) - (ng - nd))

    def feats(centre_idx: np.ndarray, cam: np.ndarray) -> torch.Tensor:
        x = rng.standard_normal((centre_idx.size, dim), dtype=np.float32)
        x *= noise / np.sqrt(dim)
        x += centres[centre_idx]
        x += offsets[cam]
        return torch.from_numpy(x)

    return {"qf": feats(q_pids, q_cams), "gf": feats(g_centre, g_cams), "q_pids": q_pids,
            "g_pids": g_pids, "q_cams": q_cams, "g_cams": g_cams}


# --- timing ---------------------------------------------------------------------------------
def measure_phase(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, Any], Any]:
    walls, cpus, peaks, above = [], [], [], []
    out = None
    for _ in range(repeats):
        out = None
        reset_peak()
        start_rss = self_status_bytes("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        peak = self_status_bytes("VmHWM")
        peaks.append(peak)
        above.append(peak - start_rss)
    return {"wall_s_median": statistics.median(walls), "wall_s_range": [min(walls), max(walls)],
            "cpu_s_median": statistics.median(cpus), "cpu_s_range": [min(cpus), max(cpus)],
            "peak_rss_mb": max(peaks) / 2**20, "peak_above_start_mb": max(above) / 2**20,
            "repeats": repeats}, out


def run(p: dict[str, Any], chunk: int, seed: int = 0) -> dict[str, Any]:
    data = market_like(p, seed)
    qf, gf = data["qf"], data["gf"]
    labels = (data["q_pids"], data["g_pids"], data["q_cams"], data["g_cams"])
    rep = p["repeats"]
    phases: dict[str, Any] = {}
    phases["floor"], _ = measure_phase(lambda: torch.mm(qf, gf.t()), rep)
    phases["features_to_rank"], res = measure_phase(
        lambda: features_to_rank(qf, gf, *labels, chunk=chunk), rep)
    dist = torch.addmm((qf * qf).sum(1)[:, None] + (gf * gf).sum(1)[None, :], qf, gf.t(),
                       alpha=-2.0)
    phases["evaluate_rank_on_distmat"], res2 = measure_phase(
        functools.partial(evaluate_rank, dist, *labels, chunk=chunk), rep)
    del dist
    phases["re_ranking"], rr = measure_phase(
        lambda: evaluate_rank(re_ranking(qf, gf, chunk=chunk), *labels, chunk=chunk),
        p["rerank_repeats"])
    phases["reranked_rank"], rr2 = measure_phase(
        lambda: reranked_rank(qf, gf, *labels, chunk=chunk), p["rerank_repeats"])
    floor = phases["floor"]
    for name in ("features_to_rank", "evaluate_rank_on_distmat", "re_ranking", "reranked_rank"):
        ph = phases[name]
        ph["wall_ratio_to_floor"] = ph["wall_s_median"] / floor["wall_s_median"]
        ph["cpu_ratio_to_floor"] = ph["cpu_s_median"] / floor["cpu_s_median"]
    return {"sizes": {k: p[k] for k in ("queries", "gallery", "distractors", "ids", "cams",
                                        "dim", "noise")},
            "chunk": chunk, "phases": phases,
            "metrics": {"features_to_rank": res.summary(), "evaluate_rank": res2.summary(),
                        "re_ranking": rr.summary(), "reranked_rank": rr2.summary(),
                        "both_ap": res.map_by_convention}}


def markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    s = r["sizes"]
    lines = ["# Re-ID evaluation at scale", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']}; torch threads: {report['threads']}; load average "
             f"before / after: {report['load_before']} / {report['load_after']}.", "",
             f"Sizes: {s['queries']:,} queries x {s['gallery']:,} gallery ({s['distractors']:,} "
             f"distractors), {s['ids']} identities, {s['cams']} cameras, {s['dim']}-d; query "
             f"chunk {r['chunk']}.", "",
             "| phase | wall s (median [range]) | CPU s | wall / floor | CPU / floor | "
             "peak RSS MB | above start MB |", "|---|---|---|---|---|---|---|"]
    names = {"floor": "(a) product qf @ gf.T alone",
             "features_to_rank": "(b) features -> CMC/mAP/mINP",
             "evaluate_rank_on_distmat": "(b2) evaluate_rank on a given distmat",
             "re_ranking": "(c) k-reciprocal re-ranking + evaluate_rank",
             "reranked_rank": "(c2) re-ranking ranked chunk by chunk (reranked_rank)"}
    for key, label in names.items():
        ph = r["phases"][key]
        lines.append(
            f"| {label} | {ph['wall_s_median']:.2f} [{ph['wall_s_range'][0]:.2f}, "
            f"{ph['wall_s_range'][1]:.2f}] | {ph['cpu_s_median']:.2f} | "
            f"{ph.get('wall_ratio_to_floor', 1.0):.2f} | {ph.get('cpu_ratio_to_floor', 1.0):.2f} "
            f"| {ph['peak_rss_mb']:.0f} | {ph['peak_above_start_mb']:.0f} |")
    m = r["metrics"]
    lines += ["", "Targets: (b)/(a) <= 3 with peak < 2 GB; (c) within 4 GB.", "",
              "Metrics on the synthetic features (sanity only; AP convention named): "
              + "; ".join(f"{k}: R1 {v['R1']:.4f}, mAP {v['mAP']:.4f} ({v['ap']}), mINP "
                          f"{v['mINP']:.4f}" for k, v in m.items() if k != "both_ap")
              + f"; trapezoid mAP {m['both_ap']['trapezoid']:.4f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="market")
    ap.add_argument("--quick", action="store_true", help="same as --preset quick")
    ap.add_argument("--chunk", type=int, default=256, help="queries per block")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("outputs/reid_eval_scale"))
    args = ap.parse_args(argv)
    threads = configure_threads()
    preset = "quick" if args.quick else args.preset
    p = dict(PRESETS[preset])
    if args.repeats:
        p["repeats"] = args.repeats
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = run(p, args.chunk)
    report = {"command": "python -m benchmarks.reid_eval_scale " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "preset": preset, "threads": threads,
              "env_threads": os.environ.get("FEDFR_NUM_THREADS", ""),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch "
                         f"{torch.__version__}",
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "result": result}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"reid_eval_scale_{preset}.json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    (args.out / f"reid_eval_scale_{preset}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
