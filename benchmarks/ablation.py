"""Table 7.1's ablation on CPU-sized data: pre-trained, FedAvg, +HN, +contrastive, FedFR, central.

Every federated row runs the same ServerApp/ClientApp (in-process, no Ray) on the same split,
seed and pre-trained model; the central row trains on all identities for as many epochs as a
client trains in the whole federation. Writes ``ablation.csv``, ``ablation.md`` (laid out like
Table 7.1, values in %), ``roc-generic.png`` / ``roc-personalized.png`` (TAR against FAR at the
reported levels), ``config.json`` and the split manifest to ``--out``.

    python -m benchmarks.ablation --out outputs/ablation [--seeds 0,1,2]

With ``--seeds`` each seed runs in ``<out>/seed-<s>/`` (its own tables) and ``ablation.md`` /
``.csv`` at the top report mean ± sd over the seeds with 95 % intervals; the personalised
columns of the federated rows get the bootstrap over seeds, clients and identities (each row's
personalised model evaluated again from its run folder).
    python -m benchmarks.ablation --run-config "dataset='folder' data-root='/abs/orl' ..."
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.common import (
    PAPER,
    SCORES_KEY,
    central_row,
    offline_scores,
    parser,
    plot_roc,
    run_row,
    seed_dirs,
    start,
    write_run_files,
    write_seed_table,
    write_table,
)

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


def run_one(base: dict, out: Path, rows: list[str], central: bool, scores: bool = False
            ) -> list[tuple[list[str], dict]]:
    """One seed's table (written to ``out``); rows carry bootstrap scores when ``scores``."""
    results: list[tuple[list[str], dict]] = []
    pretrained = None
    for name in rows:
        label, switches = ROWS[name]
        report = run_row(base, switches, out / name)
        pretrained = pretrained or report["pretrained"]
        res = {**report["final"], "seconds": report["seconds"]}
        if scores:
            model = report["final"]["personalized_model"]
            res[SCORES_KEY] = offline_scores(out / name, [model])[model]
        results.append(([label], res))
    if central:
        results.append((["Central, all identities"], central_row(base)))
    table = ([(["Pre-trained (public identities)"], {**pretrained, "seconds": 0.0})]
             if pretrained else []) + results
    write_table(out, "ablation", table, ["row"], extra=[("seconds", "seconds")])
    for sec in ("generic", "personalized"):
        plot_roc(out / f"roc-{sec}.png", [(lab[0], r.get(sec) or {}) for lab, r in table],
                 f"{sec} 1:1 (Table 7.1 rows)")
    write_run_files(out, base, out / rows[0] if rows else None)
    return table


def run(base: dict, out: Path, rows: list[str], central: bool, seeds: list[int] | None = None,
        num_samples: int = 200) -> pd.DataFrame | None:
    """One table (no seeds: the original layout) or one per seed plus the table over seeds."""
    per_seed = [run_one(b, o, rows, central, scores=bool(seeds) and num_samples > 0)
                for b, o in seed_dirs(base, out, seeds)]
    if not seeds:
        return pd.read_csv(out / "ablation.csv")
    frame = write_seed_table(out, "ablation", per_seed, ["row"], extra=[("seconds", "seconds")],
                             num_samples=num_samples)
    write_run_files(out, base, seed_dirs(base, out, seeds)[0][1] / rows[0] if rows else None)
    return frame


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "outputs/ablation")
    p.add_argument("--rows", default=",".join(ROWS), help=f"subset of {list(ROWS)}")
    p.add_argument("--no-central", action="store_true", help="skip the central upper bound")
    args = p.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; choose from {list(ROWS)}")
    base, out = start(args, {}, PAPER)
    run(base, out, rows, central=not args.no_central, seeds=args.seeds,
        num_samples=args.bootstrap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
