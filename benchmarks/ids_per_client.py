"""Fig. 7.4: generic performance with a fixed number of clients and 40 / 20 / 10 / 1 IDs each.

The data is split once by the paper's builder (``fedfr.face.data.ms1m``): the public and generic
identities and the client pool are the same in every scenario, so one pre-trained model serves
all of them; scenario k gives each client the next k identities of the pool. A synthetic source
is first written as RecordIO under ``--out/data`` (the path a real MS-Celeb-1M run takes). Per
scenario: pre-trained, central (all identities, upper bound), FedFace and FedFR. Writes
``ids_per_client.{csv,md}`` (long form: scenario x method, generic metrics in %),
``fig7_4.{csv,md}`` (methods x scenarios, the plotted metric), ``fig7_4.png``, ``config.json``,
and ``split-k<k>.json`` per scenario (``split.json`` = the first).

FedFace's privacy cost: its clients send their class proxies to the server (FedFR does not).

    python -m benchmarks.ids_per_client --out outputs/ids-per-client [--ids 8,4,2,1] [--paper]

With ``--seeds 0,1,2`` each seed runs in ``<out>/seed-<s>/`` and the top-level
``ids_per_client`` table holds mean ± sd over the seeds with a Student-t 95 % interval;
``fig7_4`` plots the means.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd

from benchmarks.common import (
    PAPER,
    SMALL,
    central_row,
    columns,
    parser,
    run_row,
    seed_dirs,
    start,
    write_run_files,
    write_seed_table,
    write_table,
)
from fedfr.config import resolve
from fedfr.face.data.ms1m import MS1MSpec, build_ms1m_split
from fedfr.face.data.recordio import write_source_as_recordio
from fedfr.face.workspace import open_source
from strategies.fedface import PRIVACY_COST

SMALL_IDS = (8, 4, 2, 1)
PAPER_IDS = (40, 20, 10, 1)
#: 8 clients (the paper: 100); 8 images per public identity keep FedFR's hard-negative pool small
SMALL_FIG = {**SMALL, "num-clients": 8, "num-server-rounds": 3, "public-images-per-id": 8}
PAPER_FIG = {**PAPER, "num-clients": 100}
METHODS = {
    "fedface": ("FedFace", {"strategy": "fedface", "contrastive": False, "dfc": False,
                            "final-eval-models": "global"}),
    "fedfr": ("FedFR", {"strategy": "fedfr", "hard-negatives": True, "contrastive": True,
                        "dfc": True, "final-eval-models": "personal"}),
}


def prepare_source(base: dict, out: Path, max_ids: int) -> dict:
    """Data settings of every scenario: synthetic data becomes a RecordIO under out/data."""
    cfg = resolve(base)
    if cfg.dataset != "synthetic":
        return {}
    data = out / "data"
    if not (data / "train.rec").exists():  # identities: public + clients x max_ids + generic
        write_source_as_recordio(open_source(cfg.replace(ids_per_client=max_ids)), data)
    return {"dataset": "recordio", "data-root": str(data)}


def plot(path: Path, ids: list[int], series: dict[str, list[float]], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    x = list(range(len(ids)))
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    ax.set_xticks(x, [str(k) for k in ids])
    ax.set_xlabel("identities per client")
    ax.set_ylabel(f"generic {metric} (%)")
    ax.set_title("Fig. 7.4: generic performance vs #IDs per client")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(base: dict, out: Path, ids: list[int], seeds: list[int] | None = None) -> pd.DataFrame:
    """One figure (no seeds) or one per seed plus the table and figure over the seeds."""
    per_seed = [run_one(b, o, ids) for b, o in seed_dirs(base, out, seeds)]
    if not seeds:
        return pd.read_csv(out / "fig7_4.csv")
    note = f"Generic protocol with Theta_g, values in %. {PRIVACY_COST}."
    write_seed_table(out, "ids_per_client", per_seed, ["clients x IDs", "method"],
                     extra=[("seconds", "seconds")], note=note, num_samples=0)
    mean_rows = []
    for i, (labels, res) in enumerate(per_seed[0]):
        gen = {k: sum(float(rows[i][1].get("generic", {}).get(k, math.nan))
                      for rows in per_seed) / len(per_seed) for k in res.get("generic", {})}
        mean_rows.append((labels, {"generic": gen}))
    first = seed_dirs(base, out, seeds)[0][1]
    shutil.copy(first / "split.json", out / "split.json")
    shutil.copy(first / "config.json", out / "config.json")
    return write_figure(out, mean_rows, ids, int(base["num-clients"]),
                        f" Mean over seeds {', '.join(map(str, seeds))}.")


def run_one(base: dict, out: Path, ids: list[int]) -> list[tuple[list[str], dict]]:
    clients = int(base["num-clients"])
    data = prepare_source(base, out, max(ids))
    pretrained = out / "pretrained.pt"
    pretrained.unlink(missing_ok=True)  # trained again by the first scenario
    rows: list[tuple[list[str], dict]] = []
    for k in ids:
        cfg = resolve({**base, **data, "ids-per-client": k})
        source = open_source(cfg)
        spec = MS1MSpec(num_public_ids=cfg.num_public_ids, client_pool_ids=clients * max(ids),
                        num_clients=clients, ids_per_client=k, train_per_id=cfg.train_per_id,
                        test_per_id=cfg.test_per_id, num_generic_ids=cfg.num_generic_ids,
                        min_images=cfg.train_per_id + cfg.test_per_id,
                        public_images_per_id=cfg.public_images_per_id, seed=cfg.seed)
        manifest = out / f"split-k{k}.json"
        build_ms1m_split(source, spec).save(manifest)
        scen = {**base, **data, "ids-per-client": k, "split-manifest": str(manifest),
                "pretrained-path": str(pretrained)}
        reports = {name: run_row(scen, switches, out / f"k{k}-{name}")
                   for name, (_, switches) in METHODS.items()}
        scenario = f"{clients} x {k}"
        rows.append(([scenario, "Pre-trained"], reports["fedfr"]["pretrained"]))
        rows.append(([scenario, "Central"], central_row(scen)))
        for name, (label, _) in METHODS.items():
            rows.append(([scenario, label], {**reports[name]["final"],
                                             "seconds": reports[name]["seconds"]}))
    note = f"Generic protocol with Theta_g, values in %. {PRIVACY_COST}."
    write_table(out, "ids_per_client", rows, ["clients x IDs", "method"],
                extra=[("seconds", "seconds")], note=note)
    write_figure(out, rows, ids, clients)
    write_run_files(out, {**base, **data}, None)
    shutil.copy(out / f"split-k{ids[0]}.json", out / "split.json")
    return rows


def write_figure(out: Path, rows: list[tuple[list[str], dict]], ids: list[int], clients: int,
                 caption: str = "") -> pd.DataFrame:
    """``fig7_4.{csv,md,png}``: the first generic column, methods x scenarios."""
    col = columns(rows[0][1], ("generic",))[0]
    methods = ["Pre-trained", "Central", *(label for label, _ in METHODS.values())]
    series = {m: [100 * float((r.get("generic") or {}).get(col[1], math.nan))
                  for lab, r in rows if lab[1] == m] for m in methods}
    frame = pd.DataFrame({"method": methods,
                          **{f"{k} IDs/client": [series[m][i] for m in methods]
                             for i, k in enumerate(ids)}})
    frame.to_csv(out / "fig7_4.csv", index=False)
    head = "| method | " + " | ".join(f"{k} IDs/client" for k in ids) + " |"
    lines = [f"Generic {col[2]} (%), {clients} clients.{caption}", "", head,
             "|---|" + "---:|" * len(ids)]
    lines += ["| " + m + " | " + " | ".join(f"{v:.2f}" for v in series[m]) + " |"
              for m in methods]
    (out / "fig7_4.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    plot(out / "fig7_4.png", ids, series, col[2])
    return frame


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "outputs/ids-per-client")
    p.add_argument("--ids", default=None, help="identities per client, comma-separated "
                   f"(default {SMALL_IDS}; --paper {PAPER_IDS})")
    args = p.parse_args(argv)
    base, out = start(args, SMALL_FIG, PAPER_FIG)
    ids = [int(k) for k in (args.ids.split(",") if args.ids else
                            (PAPER_IDS if args.paper else SMALL_IDS))]
    run(base, out, ids, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
