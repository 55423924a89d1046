"""Tables 7.2 and 7.3: personalisation methods, and the models used for personalised evaluation.

Three federations on one split, seed and pre-trained model:
- ``two-stage``: HN + contrastive without DFC (Yu et al.'s stage 1), then each client's stage 2
  ``finetune`` (CosFace on local + hard-negative public data) and ``kd`` (+ KL to Theta_g);
- ``dfc-cosface``: FedFR with the DFC branch trained by CosFace (Table 7.2's variant);
- ``fedfr``: FedFR with the binary DFC loss.
Each finished run is evaluated on the personalised protocol with Theta_g, Theta_l and
[Theta_l, Pi_l] (and Fine-tune / KD) by ``fedfr.face.evaluation.personal`` from its output folder
(the same protocol and seeding as the clients' evaluate handler), which keeps every client's
scores for the bootstrap intervals. Writes ``table7_2``, ``table7_3`` (with paired differences
to Theta_g), ``all_models`` (.csv / .md), ``diagnostics.md`` (how far Pi_l is from the
identity, Omega's one-vs-all accuracy, genuine / impostor score means), ``config.json`` and
``split.json`` to ``--out``; with ``--seeds`` one folder per seed and the tables over seeds.

    python -m benchmarks.personalization --out outputs/personalization [--paper] [--seeds 0,1,2]
    python -m benchmarks.personalization --preset personal --seeds 0,1,2 --out outputs/pers-cpu

``--preset small`` (default) is ``benchmarks.common.SMALL``; ``--preset personal`` is
``benchmarks.common.PERSONAL``, the CPU preset of docs/results.md's Tables 7.2 / 7.3.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PAPER,
    PERSONAL,
    SCORES_KEY,
    SMALL,
    parser,
    run_row,
    seed_dirs,
    start,
    t_interval,
    write_run_files,
    write_seed_table,
)
from fedfr.config import resolve
from fedfr.face.evaluation.personal import evaluate_run, load_run, score_summary
from fedfr.face.evaluation.run import PERSONAL_FARS, PERSONAL_FPIRS
from fedfr.face.evaluation.uncertainty import client_metrics, mean_metrics

FEDFR = {"strategy": "fedfr", "hard-negatives": True, "contrastive": True,
         "final-eval-models": "global"}
#: run name -> (run-config switches, models evaluated from its output folder)
RUNS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "two-stage": ({**FEDFR, "dfc": False}, ("global", "local", "finetune", "kd")),
    "dfc-cosface": ({**FEDFR, "dfc": True, "dfc-loss": "cosface"},
                    ("global", "local", "personal")),
    "fedfr": ({**FEDFR, "dfc": True, "dfc-loss": "bce"}, ("global", "local", "personal")),
}
#: Table 7.2's rows: (method, modules) -> (run, evaluated model)
TABLE_7_2 = [(["Yu et al. 2020", "Fine-tune"], ("two-stage", "finetune")),
             (["Yu et al. 2020", "KD"], ("two-stage", "kd")),
             (["Ours (w/ branch)", "CosFace"], ("dfc-cosface", "personal")),
             (["Ours (w/ branch)", "BCE"], ("fedfr", "personal"))]
#: Table 7.3's rows: evaluated model of the FedFR run
TABLE_7_3 = [("Theta_g", "global"), ("Theta_l(i)", "local"), ("[Theta_l(i), Pi_l(i)] (ours)",
                                                                "personal")]
MODEL_NAMES = {"global": "Theta_g", "local": "Theta_l", "personal": "[Theta_l, Pi_l]",
               "finetune": "Fine-tune", "kd": "KD"}


def _row(scores: list, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = mean_metrics([client_metrics(s, PERSONAL_FARS, PERSONAL_FPIRS) for s in scores])
    return {"personalized": metrics, SCORES_KEY: scores, **(extra or {})}


def _finished(base: dict, switches: dict, run_dir: Path) -> dict | None:
    """The report of a finished run in ``run_dir`` with exactly this config, else None."""
    path = run_dir / "report.json"
    if not (run_dir / "final_model.pt").is_file() or not path.is_file():
        return None
    report = json.loads(path.read_text())
    want = resolve({**base, **switches, "output-dir": str(run_dir), "resume": False})
    have = resolve(report.get("config", {}))
    want = want.with_clients(have.num_clients)
    if (have.digest() != want.digest() or have.num_server_rounds != want.num_server_rounds
            or not report.get("final")):
        return None
    report.setdefault("seconds", report.get("timing", {}).get("total_seconds", float("nan")))
    return report


def run_seed(base: dict, out: Path, reuse: bool = False) -> dict[str, list]:
    """The three federations of one seed and their offline evaluation; rows per table.
    reuse: keep a finished run folder of the same config instead of training it again."""
    reports, evals, reused = {}, {}, True
    for name, (switches, _) in RUNS.items():
        found = _finished(base, switches, out / name) if reuse else None
        reused = reused and found is not None
        reports[name] = found or run_row(base, switches, out / name)
    cache = out / "evaluation.pkl"  # this seed's rows, reused only with all three runs
    if reused and cache.is_file():
        with cache.open("rb") as fh:
            return pickle.load(fh)
    for name, (_, models) in RUNS.items():
        evals[name] = evaluate_run(load_run(out / name), models)
    rows72 = [(labels, _row(evals[r].scores[m])) for labels, (r, m) in TABLE_7_2]
    rows73 = [([label], _row(evals["fedfr"].scores[m])) for label, m in TABLE_7_3]
    every, diags = [], []
    for name, ev in evals.items():
        for model, scores in ev.scores.items():
            every.append(([name, MODEL_NAMES.get(model, model)],
                          {**_row(scores), "generic": reports[name]["final"]["generic"],
                           "seconds": reports[name]["seconds"]}))
            summ = mean_metrics([score_summary(s) for s in scores])
            diags.append(([name, MODEL_NAMES.get(model, model)], summ))
        branch = mean_metrics(ev.diagnostics)
        branch.pop("client", None)
        diags.append(([name, "branch / backbone"], branch))
    rows = {"table7_2": rows72, "table7_3": rows73, "all_models": every, "diagnostics": diags}
    with cache.open("wb") as fh:
        pickle.dump(rows, fh)
    return rows


def _diagnostics_md(per_seed: list[list[tuple[list[str], dict[str, float]]]]) -> str:
    lines = ["| run | evaluated model | diagnostic | mean ± sd over seeds |", "|---|---|---|---:|"]
    for i, (labels, first) in enumerate(per_seed[0]):
        for key in first:
            mean, sd, _, _ = t_interval([rows[i][1].get(key, float("nan")) for rows in per_seed])
            cell = f"{mean:.4f}" + (f" ± {sd:.4f}" if sd == sd else "")
            lines.append(f"| {labels[0]} | {labels[1]} | {key} | {cell} |")
    notes = [
        "", "mean_genuine / mean_impostor: mean cosine of the client's genuine / impostor "
        "pairs; d_prime = (mu_gen - mu_imp) / sqrt((var_gen + var_imp) / 2).",
        "pi_rel_dev = ||Pi - I||_F / ||I||_F; ova_*: one-vs-all decisions s' g(cos) + b > 0 of "
        "Omega on the client's train / test images (tpr: own class, tnr: other classes), "
        "ova_tnr_other: on other clients' test images; omega_rank1: argmax_j cos(Pi f, "
        "Omega_j) = label; theta_l_rel_dist = ||Theta_l - Theta_g|| / ||Theta_g||; "
        "theta_l_feature_cos: mean cosine of a test image's Theta_l and Theta_g features."]
    return "\n".join(lines + notes) + "\n"


def run(base: dict, out: Path, epochs: int | None = None, seeds: list[int] | None = None,
        num_samples: int = 200, reuse: bool = False) -> dict[str, list]:
    if epochs is not None:
        base = {**base, "personalize-epochs": epochs}
    per_seed = [run_seed(b, o, reuse) for b, o in seed_dirs(base, out, seeds)]
    tables = {k: [s[k] for s in per_seed] for k in per_seed[0]}
    n = len(per_seed)
    write_seed_table(out, "table7_2", tables["table7_2"], ["Method", "Modules"],
                     sections=("personalized",), num_samples=num_samples,
                     reference="Ours (w/ branch) / BCE",
                     note="Personalised protocol, values in %, averaged over clients. Fine-tune "
                          "/ KD: stage 2 from the final Theta_g of the HN + contrastive "
                          f"federation. {n} seed(s).")
    write_seed_table(out, "table7_3", tables["table7_3"], ["Evaluated model"],
                     sections=("personalized",), num_samples=num_samples,
                     reference=["Theta_g", "Theta_l(i)"],
                     note=f"Personalised protocol of the FedFR run, values in %. {n} seed(s).")
    write_seed_table(out, "all_models", tables["all_models"], ["run", "evaluated model"],
                     extra=[("seconds", "run seconds")], num_samples=0,
                     note="Generic columns: the run's global model Theta_g (same on each line).")
    (out / "diagnostics.md").write_text(_diagnostics_md(tables["diagnostics"]))
    first = seed_dirs(base, out, seeds)[0][1]
    write_run_files(out, base, first / "fedfr")
    return tables


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "outputs/personalization")
    p.add_argument("--personalize-epochs", type=int, default=None,
                   help="stage-2 epochs of Fine-tune / KD (default: the config's)")
    p.add_argument("--preset", choices=("small", "personal"), default="small",
                   help="CPU preset: small (SMALL) or personal (PERSONAL, more local training "
                        "and t_HN = 0.6); --paper overrides it")
    p.add_argument("--reuse", action="store_true",
                   help="keep finished run folders of the same config (e.g. seeds run "
                        "separately) and only evaluate them")
    args = p.parse_args(argv)
    base, out = start(args, PERSONAL if args.preset == "personal" else SMALL, PAPER)
    run(base, out, args.personalize_epochs, args.seeds, args.bootstrap, args.reuse)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
