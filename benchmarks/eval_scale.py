"""Evaluation at the paper's size: time and peak memory against the floor of the matrix products.

Cases (synthetic L2-normalised features; identities = random unit centres plus Gaussian noise):

- ``personal``: the personalised 1:1 and 1:N protocols of every client at once
  (``fedfr.face.evaluation.streaming.personalized_all_clients``). Paper preset: 40 clients x 100
  identities x (60 train + 40 test) images, 512-d: 160k test images, ~624 M impostor pairs per
  client, TAR @ FAR 1e-6 / 1e-5 and TPIR @ FPIR 1e-5 / 1e-4. Floor: the bare products the
  protocol needs, timed in the same run with the same blocks: every cross-client test block once
  (T_c T_c'^T, c < c'), the within-identity genuine blocks and probes x all galleries.
- ``ijbc``: IJB-C-size 1:1 scoring (``fedfr.face.evaluation.ijbc.verify_1to1``): 23,124 template
  features, 3,531 gallery x 19,593 probe templates, 15.6 M listed pairs (19,557 genuine), TAR
  at FAR 1e-6..1e-1. Floor: the dense product gallery x probes (every listed pair lies in it).

Peak memory: the process's peak resident set (VmHWM), reset after the inputs are built
(/proc/self/clear_refs), so "peak" includes the inputs that stay resident and "above inputs"
is what the evaluation itself adds. Each case is repeated; medians and ranges are reported.

    FEDFR_NUM_THREADS=1 python -m benchmarks.eval_scale --preset small --out outputs/eval_scale
    FEDFR_NUM_THREADS=1 python -m benchmarks.eval_scale --preset paper --repeats 1
"""

from __future__ import annotations

import os
import sys

# BLAS threads must be fixed before numpy loads (products run in numpy's BLAS).
if os.environ.get("FEDFR_NUM_THREADS"):
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, os.environ["FEDFR_NUM_THREADS"])

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.procmon import reset_peak, self_status_bytes  # noqa: E402
from fedfr.face.evaluation.ijbc import IJBC_FARS, verify_1to1  # noqa: E402
from fedfr.face.evaluation.protocols import average_metrics  # noqa: E402
from fedfr.face.evaluation.streaming import genuine_scores, personalized_all_clients  # noqa: E402
from fedfr.runtime import configure_threads  # noqa: E402

log = logging.getLogger("fedfr.benchmarks.eval_scale")

PRESETS = {
    "small": {"clients": 8, "ids": 20, "train": 12, "test": 8, "dim": 128,
              "ijbc_gallery": 400, "ijbc_probes": 2000, "ijbc_pairs": 200_000, "repeats": 3},
    "medium": {"clients": 10, "ids": 100, "train": 60, "test": 40, "dim": 512,
               "ijbc_gallery": 1000, "ijbc_probes": 6000, "ijbc_pairs": 1_500_000, "repeats": 3},
    "paper": {"clients": 40, "ids": 100, "train": 60, "test": 40, "dim": 512,
              "ijbc_gallery": 3531, "ijbc_probes": 19593, "ijbc_pairs": 15_658_489,
              "ijbc_genuine": 19_557, "repeats": 1},
}
CHUNK = 4096


# --- synthetic data -------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def identity_features(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray,
                      noise: float) -> np.ndarray:
    """Unit features: centre of each label + Gaussian noise of expected norm ``noise``."""
    d = centres.shape[1]
    x = rng.standard_normal((labels.shape[0], d), dtype=np.float32)
    x *= noise / np.sqrt(d)
    x += centres[labels]
    return _unit(x)


def personal_data(p: dict, seed: int = 0, noise: float = 1.8):
    rng = np.random.default_rng(seed)
    k, ids, d = p["clients"], p["ids"], p["dim"]
    centres = _unit(rng.standard_normal((k * ids, d), dtype=np.float32))
    te, tey, tr, trl = [], [], [], []
    for c in range(k):
        own = np.arange(c * ids, (c + 1) * ids)
        y = np.repeat(own, p["test"])
        te.append(identity_features(rng, centres, y, noise))
        tey.append(y)
        y2 = np.repeat(own, p["train"])
        tr.append(identity_features(rng, centres, y2, noise))
        trl.append(y2)
    return te, tey, tr, trl


def ijbc_data(p: dict, seed: int = 0, noise: float = 1.5):
    """Template features and a pair list shaped like IJB-C's: every pair is (gallery template,
    probe template), pairs grouped by gallery template as in the released file."""
    rng = np.random.default_rng(seed)
    g, q, d = p["ijbc_gallery"], p["ijbc_probes"], p["dim"]
    n_sub = g
    centres = _unit(rng.standard_normal((n_sub, d), dtype=np.float32))
    gal_sub = np.arange(g)
    probe_sub = rng.integers(0, n_sub, size=q)
    feats = np.concatenate([identity_features(rng, centres, gal_sub, noise),
                            identity_features(rng, centres, probe_sub, noise)])
    tids = np.arange(1, g + q + 1, dtype=np.int64) * 7  # sparse ids, as IJB-C's
    per = int(round(p["ijbc_pairs"] / g))
    t1, t2 = [], []
    by_sub = {s: np.flatnonzero(probe_sub == s) for s in range(n_sub)}
    for gi in range(g):
        mates = by_sub[gi]
        others = rng.choice(q, size=per, replace=False)
        cols = np.unique(np.concatenate([mates, others]))
        t1.append(np.full(cols.shape[0], tids[gi]))
        t2.append(tids[g + cols])
    t1, t2 = np.concatenate(t1), np.concatenate(t2)
    label = (gal_sub[(t1 // 7) - 1] == probe_sub[(t2 // 7) - 1 - g]).astype(np.int8)
    return tids, feats, t1, t2, label, g


# --- timed cases ----------------------------------------------------------------------------
def personal_floor(te, tey, tr, trl) -> float:
    """Seconds of the bare products of the personalised protocols (same blocks)."""
    t0 = time.perf_counter()
    k = len(te)
    n_max = max(t.shape[0] for t in te)
    buf = np.empty((min(CHUNK, n_max), min(CHUNK, n_max)), np.float32)
    for c in range(k):
        for c2 in range(c + 1, k):
            for i in range(0, te[c].shape[0], CHUNK):
                a = te[c][i:i + CHUNK]
                for j in range(0, te[c2].shape[0], CHUNK):
                    b = te[c2][j:j + CHUNK]
                    np.matmul(a, b.T, out=buf[:a.shape[0], :b.shape[0]])
    for c in range(k):
        genuine_scores(te[c], tey[c])
    gal = np.concatenate([np.stack([tr[c][trl[c] == g].mean(0) for g in np.unique(trl[c])])
                          for c in range(k)])
    gt = np.ascontiguousarray(gal.T)
    for probes in te:
        for a in range(0, probes.shape[0], CHUNK):
            _ = probes[a:a + CHUNK] @ gt
    return time.perf_counter() - t0


def run_personal(p: dict, repeats: int) -> dict:
    t0 = time.perf_counter()
    te, tey, tr, trl = personal_data(p)
    log.info("personal: data built in %.1f s (%d test, %d train images)",
             time.perf_counter() - t0, sum(t.shape[0] for t in te), sum(t.shape[0] for t in tr))
    total = sum(t.shape[0] for t in te)
    floors, ours, peaks, above = [], [], [], []
    result = None
    for r in range(repeats):
        floors.append(personal_floor(te, tey, tr, trl))
        base = self_status_bytes("VmRSS")
        ok = reset_peak()
        t0 = time.perf_counter()
        result = personalized_all_clients(te, tey, tr, trl, fars=(1e-6, 1e-5),
                                          fpirs=(1e-5, 1e-4), chunk_size=CHUNK)
        ours.append(time.perf_counter() - t0)
        peak = self_status_bytes("VmHWM") if ok else 0
        peaks.append(peak)
        above.append(peak - base if ok else 0)
        log.info("personal repeat %d: floor %.2f s, protocol %.2f s (x%.2f), peak %.0f MB",
                 r + 1, floors[-1], ours[-1], ours[-1] / floors[-1], peak / 2**20)
    mean = average_metrics(result)  # mean over clients, nan levels ignored
    return {"case": "personal 1:1 + 1:N (all clients)",
            "sizes": {"clients": p["clients"], "ids_per_client": p["ids"],
                      "train_per_id": p["train"], "test_per_id": p["test"], "dim": p["dim"],
                      "impostor_pairs_per_client": int(mean["num_impostor"]),
                      "genuine_pairs_per_client": int(mean["num_genuine"]),
                      "probes": total},
            **_summary(floors, ours, peaks, above),
            "metrics_mean_over_clients": mean}


def run_ijbc(p: dict, repeats: int) -> dict:
    t0 = time.perf_counter()
    tids, feats, t1, t2, label, g = ijbc_data(p)
    log.info("ijbc: data built in %.1f s (%d templates, %d pairs, %d genuine)",
             time.perf_counter() - t0, tids.shape[0], t1.shape[0], int(label.sum()))
    floors, ours, peaks, above = [], [], [], []
    metrics = None
    gal, probes = feats[:g], feats[g:]
    for r in range(repeats):
        tf = time.perf_counter()
        for a in range(0, g, 512):
            _ = gal[a:a + 512] @ probes.T
        floors.append(time.perf_counter() - tf)
        base = self_status_bytes("VmRSS")
        ok = reset_peak()
        t0 = time.perf_counter()
        metrics, _ = verify_1to1(tids, feats, t1, t2, label, IJBC_FARS)
        ours.append(time.perf_counter() - t0)
        peak = self_status_bytes("VmHWM") if ok else 0
        peaks.append(peak)
        above.append(peak - base if ok else 0)
        log.info("ijbc repeat %d: floor %.2f s, 1:1 scoring %.2f s (x%.2f), peak %.0f MB",
                 r + 1, floors[-1], ours[-1], ours[-1] / floors[-1], peak / 2**20)
    return {"case": "IJB-C-size 1:1 scoring",
            "sizes": {"templates": int(tids.shape[0]), "gallery_templates": g,
                      "probe_templates": int(tids.shape[0] - g), "pairs": int(t1.shape[0]),
                      "genuine": int(label.sum()), "dim": p["dim"]},
            **_summary(floors, ours, peaks, above), "metrics": metrics}


def _summary(floors, ours, peaks, above) -> dict:
    ratios = [o / f for o, f in zip(ours, floors, strict=True)]
    return {"repeats": len(ours),
            "floor_s_median": statistics.median(floors), "floor_s_range": [min(floors),
                                                                           max(floors)],
            "protocol_s_median": statistics.median(ours), "protocol_s_range": [min(ours),
                                                                               max(ours)],
            "ratio_median": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "peak_rss_mb": max(peaks) / 2**20, "peak_above_inputs_mb": max(above) / 2**20}


def markdown(report: dict) -> str:
    lines = ["# Evaluation at scale", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']}; threads: {report['threads']}; "
             f"preset: {report['preset']}.", "",
             "| case | sizes | floor (s) | protocol (s) | protocol / floor | peak RSS (MB) | "
             "peak above inputs (MB) |", "|---|---|---|---|---|---|---|"]
    for c in report["cases"]:
        sizes = ", ".join(f"{k}={v:,}" for k, v in c["sizes"].items())
        lines.append(
            f"| {c['case']} | {sizes} | {c['floor_s_median']:.2f} "
            f"[{c['floor_s_range'][0]:.2f}, {c['floor_s_range'][1]:.2f}] | "
            f"{c['protocol_s_median']:.2f} [{c['protocol_s_range'][0]:.2f}, "
            f"{c['protocol_s_range'][1]:.2f}] | {c['ratio_median']:.2f} "
            f"[{c['ratio_range'][0]:.2f}, {c['ratio_range'][1]:.2f}] | "
            f"{c['peak_rss_mb']:.0f} | {c['peak_above_inputs_mb']:.0f} |")
    lines += ["", "Medians over the repeats, [min, max] in brackets. Targets: protocol / floor "
              "<= 2, peak < 4096 MB.", ""]
    for c in report["cases"]:
        m = c.get("metrics_mean_over_clients") or c.get("metrics") or {}
        shown = {k: v for k, v in m.items() if k.startswith(("tar", "tpir", "rank"))}
        lines.append(f"- {c['case']} metrics (synthetic, sanity only): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--small", action="store_true", help="same as --preset small")
    ap.add_argument("--cases", nargs="+", choices=["personal", "ijbc"],
                    default=["personal", "ijbc"])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("outputs/eval_scale"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    threads = configure_threads()
    if args.small:
        args.preset = "small"
    p = PRESETS[args.preset]
    repeats = args.repeats or p["repeats"]
    cases = []
    if "personal" in args.cases:
        cases.append(run_personal(p, repeats))
    if "ijbc" in args.cases:
        cases.append(run_ijbc(p, repeats))
    report = {"command": "python -m benchmarks.eval_scale " + " ".join(argv or sys.argv[1:]),
              "preset": args.preset, "threads": threads,
              "env_threads": os.environ.get("FEDFR_NUM_THREADS", ""),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cases": cases}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"eval_scale_{args.preset}" + ("" if len(args.cases) == 2 else f"_{args.cases[0]}")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    (args.out / f"{stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
