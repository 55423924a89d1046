"""What the experiment scripts share: presets, running one federated row, tables, plots, files.

Each experiment (``benchmarks/<name>.py``) runs rows of in-process federations (the same
ServerApp / ClientApp as ``flwr run``, without Ray) and writes to ``--out``: ``<table>.csv`` and
``<table>.md`` (values in %, laid out like the paper's table), a PNG where the paper has a figure,
``config.json`` (the base run config) and ``split.json`` (the manifest of the first run).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fedfr.config import resolve
from fedfr.face.evaluation.run import evaluate_generic, evaluate_personalized_central
from fedfr.face.training.central import train_central
from fedfr.face.training.pretrain import load_or_pretrain
from fedfr.face.workspace import open_workspace
from fedfr.report import table_columns
from fedfr.runtime import configure_threads
from server.inprocess import DEFAULT_NUM_NODES, parse_run_config, run_inprocess

#: the paper's sizes (dissertation Sec. 7.4.1): GPU scale, with an MS-Celeb-1M source
PAPER = {"num-public-ids": 6000, "num-clients": 40, "ids-per-client": 100, "train-per-id": 60,
         "test-per-id": 40, "image-size": 112, "model": "sphereface64", "num-server-rounds": 30,
         "local-epochs": 4, "lr": 0.001, "batch-size": 256}

#: a small synthetic federation that runs in a few minutes on one CPU thread
SMALL = {"num-public-ids": 100, "num-clients": 4, "ids-per-client": 10, "train-per-id": 12,
         "test-per-id": 8, "num-generic-ids": 50, "synthetic-images-per-id": 20,
         "embedding-size": 128, "pretrain-epochs": 8, "num-server-rounds": 4, "local-epochs": 1}

#: a CPU preset for the personalised tables (issue 13): 8 clients, 24 training images per
#: identity, 4 local epochs, and t_HN = 0.6 (the small CNN's cosines sit high: at 0.4 about
#: 60-70 % of D_g are "hard negatives" per client, at 0.6 about 12-25 %; the paper: ~10 %)
PERSONAL = {**SMALL, "num-clients": 8, "train-per-id": 24, "synthetic-images-per-id": 32,
            "local-epochs": 4, "hn-threshold": 0.6}

log = logging.getLogger("fedfr.benchmarks")


# --- command line ---------------------------------------------------------------------------
def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """Arguments every experiment takes: --out, --run-config, --paper, --seeds, --bootstrap."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(default_out))
    p.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    p.add_argument("--paper", action="store_true", help="the paper's sizes (GPU scale)")
    p.add_argument("--seeds", default=None, type=parse_seeds,
                   help="comma-separated seeds (e.g. 0,1,2): every row runs once per seed "
                        "(split, data, init and shuffles) under <out>/seed-<s>/, and the "
                        "top-level tables report mean, sd and a 95%% interval; default: the "
                        "config's seed, one run, the original layout")
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap replicates of the personalised intervals (seeds x clients "
                        "x identities); 0 = seed-level t-intervals only")
    return p


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; an argparse error for anything else (empty, repeats, non-ints)."""
    try:
        seeds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--seeds: expected integers like 0,1,2, got "
                                         f"{text!r}") from e
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds: expected distinct integers, got {text!r}")
    return seeds


def start(args: argparse.Namespace, small: dict[str, Any], paper: dict[str, Any]
          ) -> tuple[dict[str, Any], Path]:
    """Logging, threads; the base run config (preset, then --run-config) and the output folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    configure_threads()
    base = {**(paper if args.paper else small), **parse_run_config(args.run_config)}
    base.setdefault("num-clients", DEFAULT_NUM_NODES)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return base, out


# --- running rows -----------------------------------------------------------------------------
def run_row(base: dict[str, Any], switches: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One federation from scratch in ``run_dir``; its report plus ``seconds`` (wall time)."""
    t0 = time.perf_counter()
    shutil.rmtree(run_dir, ignore_errors=True)
    report = run_inprocess({**base, **switches, "output-dir": str(run_dir), "resume": False})
    report["seconds"] = time.perf_counter() - t0
    log.info("%s done in %.0f s", run_dir.name, report["seconds"])
    return report


def central_row(base: dict[str, Any]) -> dict[str, Any]:
    """The upper bound: central CosFace on all identities from the same pre-trained model."""
    t0 = time.perf_counter()
    cfg = resolve(base)
    ws = open_workspace(cfg)
    backbone0, phi0, _ = load_or_pretrain(cfg, ws)
    backbone = train_central(cfg, ws, backbone0, phi0)
    return {"generic": evaluate_generic(cfg, ws, backbone),
            "personalized": evaluate_personalized_central(cfg, ws, backbone),
            "seconds": time.perf_counter() - t0}


def steps_per_epoch(report: dict[str, Any]) -> tuple[float, float]:
    """(training steps per local epoch per client, hard negatives per client per round)."""
    rounds = [r for r in report.get("rounds", []) if r.get("num-replies")]
    epochs = int(report["config"]["local-epochs"])
    replies = sum(int(r["num-replies"]) for r in rounds)
    if not replies:
        return math.nan, math.nan
    steps = sum(int(r["num-steps"]) for r in rounds) / (replies * epochs)
    hn = sum(int(r["num-hard-negatives"]) for r in rounds) / replies
    return steps, hn


# --- tables ---------------------------------------------------------------------------------
def columns(sample: dict[str, Any], sections: Sequence[str]) -> list[tuple[str, str, str]]:
    """Headline (section, key, title) columns of ``sample`` limited to ``sections``."""
    return [c for c in table_columns(sample) if c[0] in sections]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.2f}"


def write_table(out: Path, stem: str, rows: list[tuple[list[str], dict[str, Any]]],
                label_columns: list[str], sections: Sequence[str] = ("generic", "personalized"),
                extra: Sequence[tuple[str, str]] = (), note: str = "") -> pd.DataFrame:
    """Write ``<stem>.csv`` and ``<stem>.md``; metric values in %, ``extra`` plain values.

    rows: (label cells, result) with result {"generic": {..}, "personalized": {..}, extras};
    extra: (result key, column title) of plain per-row values (seconds, steps).
    """
    sample = next((r for _, r in rows if r.get(sections[0])), rows[0][1])
    cols = columns(sample, sections)
    records = []
    for labels, res in rows:
        rec: dict[str, Any] = dict(zip(label_columns, labels, strict=True))
        for sec, key, title in cols:
            value = (res.get(sec) or {}).get(key, math.nan)
            rec[title] = 100.0 * float(value) if value is not None else math.nan
        for key, title in extra:
            rec[title] = res.get(key, math.nan)
        records.append(rec)
    frame = pd.DataFrame(records)
    frame.to_csv(out / f"{stem}.csv", index=False)
    titles = label_columns + [c[2] for c in cols] + [t for _, t in extra]
    lines = ["| " + " | ".join(titles) + " |",
             "|" + "---|" * len(label_columns) + "---:|" * (len(titles) - len(label_columns))]
    for rec in records:
        cells = [str(rec[c]) for c in label_columns]
        cells += [_cell(rec[c[2]]) for c in cols]
        cells += [_cell(rec[t]) if isinstance(rec[t], float) else str(rec[t]) for _, t in extra]
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    if note:
        md += "\n" + note.strip() + "\n"
    (out / f"{stem}.md").write_text(md)
    print(f"\n{stem}:\n{md}", flush=True)
    return frame


def write_run_files(out: Path, base: dict[str, Any], first_run: Path | None) -> None:
    """``config.json`` (the resolved base config) and ``split.json`` (the first run's)."""
    cfg = resolve(base).with_clients(int(base["num-clients"]))
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if first_run is not None and (first_run / "split.json").exists():
        shutil.copy(first_run / "split.json", out / "split.json")


# --- plots ----------------------------------------------------------------------------------
def roc_points(metrics: dict[str, float], prefix: str = "tar") -> tuple[list[float], list[float]]:
    """(levels, values) of the ``<prefix>@<level>`` keys that are numbers, by level."""
    pts = []
    for key, value in metrics.items():
        if key.startswith(prefix + "@") and not math.isnan(float(value)):
            pts.append((float(key.split("@", 1)[1]), float(value)))
    pts.sort()
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_roc(path: Path, rows: list[tuple[str, dict[str, float]]], title: str) -> None:
    """TAR against FAR (log x) at the levels each row reports: one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, metrics in rows:
        x, y = roc_points(metrics)
        if x:
            ax.plot(x, [100 * v for v in y], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("FAR")
    ax.set_ylabel("TAR (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- several seeds ---------------------------------------------------------------------------
#: row result key holding {"model name": [ClientScores per client]} for the bootstrap
SCORES_KEY = "_personal_scores"


def seed_dirs(base: dict[str, Any], out: Path, seeds: list[int] | None
              ) -> list[tuple[dict[str, Any], Path]]:
    """(base config with the seed, output folder) per seed; one seed and no --seeds keeps
    ``out`` itself (the single-run layout)."""
    if not seeds:
        return [(base, out)]
    return [({**base, "seed": s}, out / f"seed-{s}") for s in seeds]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample sd, low, high) of a Student-t interval of the mean; nan sd/interval for
    fewer than 2 finite values."""
    from scipy import stats  # a dependency of scikit-learn

    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return math.nan, math.nan, math.nan, math.nan
    mean = sum(v) / len(v)
    if len(v) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return mean, sd, mean - half, mean + half


def personal_bootstrap(per_seed_rows: list[list[tuple[list[str], dict[str, Any]]]],
                       fars: Sequence[float], fpirs: Sequence[float], num_samples: int,
                       reference: str | None = None):
    """Bootstrap intervals (seeds x clients x identities) of the rows that carry scores.

    Rows are matched by position across seeds; a row's key is ' / '.join(labels). Returns
    (intervals, differences) as ``fedfr.face.evaluation.uncertainty.bootstrap`` does, keyed by row.
    """
    from fedfr.face.evaluation.uncertainty import bootstrap

    runs: dict[str, list] = {}
    for i, (labels, res) in enumerate(per_seed_rows[0]):
        if SCORES_KEY not in res:
            continue
        key = " / ".join(labels)
        runs[key] = [rows[i][1][SCORES_KEY] for rows in per_seed_rows]
    if not runs or num_samples < 1:
        return {}, {}
    return bootstrap(runs, fars, fpirs, num_samples=num_samples,
                     reference=reference if reference in runs else None)


def _pm(mean: float, sd: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.2f}"
    if not math.isnan(sd):
        text += f" ± {sd:.2f}"
    if not math.isnan(lo):
        text += f" [{lo:.1f}, {hi:.1f}]"
    return text


def write_seed_table(out: Path, stem: str,
                     per_seed_rows: list[list[tuple[list[str], dict[str, Any]]]],
                     label_columns: list[str],
                     sections: Sequence[str] = ("generic", "personalized"),
                     extra: Sequence[tuple[str, str]] = (), note: str = "",
                     num_samples: int = 200, reference: str | Sequence[str] | None = None,
                     cols: Sequence[tuple[str, str, str]] | None = None) -> pd.DataFrame:
    """``<stem>.csv`` / ``.md`` over seeds: per cell mean, sd over seeds and a 95 % interval.

    per_seed_rows: per seed, the rows ``write_table`` takes (same labels in the same order).
    Interval: the bootstrap over seeds, clients and identities for personalised metrics of
    rows that carry ``SCORES_KEY`` (``personal_bootstrap``), else a t-interval over the seeds.
    With ``reference`` (a row key ' / '.join(labels), or several) ``<stem>_diff.md`` holds
    each scored row minus each reference (paired bootstrap, one table per reference). CSV
    columns: <title>, <title> sd, <title> lo, <title> hi. Values in %. ``cols``: explicit
    (section, metric, title) columns (another workload's metrics); default: the face headline.
    """
    first = per_seed_rows[0]
    for rows in per_seed_rows[1:]:
        if [lab for lab, _ in rows] != [lab for lab, _ in first]:
            raise ValueError(f"{stem}: the seeds produced different rows")
    if cols is None:
        sample = next((r for _, r in first if r.get(sections[0])), first[0][1])
        cols = columns(sample, sections)
    cols = list(cols)
    fars = [float(k.split("@")[1]) for sec, k, _ in cols if sec == "personalized"
            and k.startswith("tar@")]
    fpirs = [float(k.split("@")[1]) for sec, k, _ in cols if sec == "personalized"
             and k.startswith("tpir@")]
    refs = [reference] if isinstance(reference, str) else list(reference or [None])
    boot, diffs = personal_bootstrap(per_seed_rows, fars, fpirs, num_samples, refs[0])
    all_diffs = [(refs[0], diffs)] + [
        (r, personal_bootstrap(per_seed_rows, fars, fpirs, num_samples, r)[1]) for r in refs[1:]]
    records, lines = [], []
    titles = label_columns + [c[2] for c in cols] + [t for _, t in extra]
    lines += ["| " + " | ".join(titles) + " |",
              "|" + "---|" * len(label_columns) + "---:|" * (len(titles) - len(label_columns))]
    for i, (labels, _) in enumerate(first):
        rec: dict[str, Any] = dict(zip(label_columns, labels, strict=True))
        cells = list(labels)
        key = " / ".join(labels)
        for sec, metric, title in cols:
            vals = [100.0 * float((rows[i][1].get(sec) or {}).get(metric, math.nan))
                    for rows in per_seed_rows]
            mean, sd, lo, hi = t_interval(vals)
            iv = boot.get(key, {}).get(metric) if sec == "personalized" else None
            if iv is not None and not math.isnan(iv.low):
                lo, hi = 100.0 * iv.low, 100.0 * iv.high
            elif not math.isnan(lo):  # a share: the t-interval is clipped to [0, 100]
                lo, hi = max(lo, 0.0), min(hi, 100.0)
            rec.update({title: mean, f"{title} sd": sd, f"{title} lo": lo, f"{title} hi": hi})
            cells.append(_pm(mean, sd, lo, hi))
        for res_key, title in extra:
            mean, sd, _, _ = t_interval([float(rows[i][1].get(res_key, math.nan))
                                         for rows in per_seed_rows])
            rec.update({title: mean, f"{title} sd": sd})
            cells.append(_pm(mean, sd, math.nan, math.nan))
        records.append(rec)
        lines.append("| " + " | ".join(cells) + " |")
    frame = pd.DataFrame(records)
    frame.to_csv(out / f"{stem}.csv", index=False)
    n = len(per_seed_rows)
    how = f"Cells: mean ± sd over {n} seed(s) [95 % interval]. "
    if boot:
        how += (f"Personalised columns: percentile bootstrap ({num_samples} replicates) over "
                "seeds, clients and identities; other columns: ")
    how += "Student-t interval over the seeds, clipped to [0, 100] (none for one seed)."
    md = "\n".join(lines) + "\n\n" + how + "\n"
    if note:
        md += "\n" + note.strip() + "\n"
    pcols = [c for c in cols if c[0] == "personalized"]
    dl: list[str] = []
    for ref, diffs in all_diffs:
        if not diffs:
            continue
        dl += [f"Paired differences to '{ref}' (percentage points, 95 % bootstrap "
               "interval; * = the interval excludes 0):", "",
               "| row | " + " | ".join(c[2] for c in pcols) + " |",
               "|---|" + "---:|" * len(pcols)]
        for key, d in diffs.items():
            cells = []
            for _, metric, _ in pcols:
                iv = d.get(metric)
                if iv is None or math.isnan(iv.estimate):
                    cells.append("n/a")
                    continue
                star = "*" if iv.low > 0 or iv.high < 0 else ""
                cells.append(f"{100 * iv.estimate:+.2f} [{100 * iv.low:+.1f}, "
                             f"{100 * iv.high:+.1f}]{star}")
            dl.append(f"| {key} | " + " | ".join(cells) + " |")
        dl.append("")
    if dl:
        (out / f"{stem}_diff.md").write_text("\n".join(dl))
        md += "\n" + "\n".join(dl)
    (out / f"{stem}.md").write_text(md)
    print(f"\n{stem}:\n{md}", flush=True)
    return frame


def offline_scores(run_dir: Path, models: Sequence[str]) -> dict[str, list]:
    """{model: [ClientScores per client]} of a finished run folder (``evaluate_run``)."""
    from fedfr.face.evaluation.personal import evaluate_run, load_run

    return evaluate_run(load_run(run_dir), tuple(models)).scores
