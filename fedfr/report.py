"""Run reports: ``report.json``, ``metrics.csv`` and the printed results table.

report.json top-level keys: ``config``, ``split``, ``pretrained``, ``rounds``, ``final`` (each of
``pretrained`` and ``final`` holds ``generic`` and ``personalized`` metric dicts), plus
``timing``, ``failures`` and ``status`` (server/exit_status.py). Metric values are fractions in
[0, 1] (tables print percentages); ``nan`` (JSON ``NaN``) marks a level the data size cannot
support. Tables print it ``--``, and ``n/a`` for a value that does not apply to the row
(``LEGEND``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from fedfr.checkpoint import atomic_write_text
from fedfr.face.evaluation.run import headline_levels


def write_json(report: dict[str, Any], path: Path) -> None:
    atomic_write_text(json.dumps(report, indent=2, sort_keys=False, default=str), path)


def rounds_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per round (0 = pre-trained): counts, timing, generic and personalised metrics."""
    rows = []
    pre = report.get("pretrained") or {}
    if pre:
        row = {"round": 0}
        row.update({f"generic.{k}": v for k, v in (pre.get("generic") or {}).items()})
        row.update({f"personalized.{k}": v for k, v in (pre.get("personalized") or {}).items()})
        rows.append(row)
    for r in report.get("rounds", []):
        row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        row.update({f"generic.{k}": v for k, v in (r.get("generic") or {}).items()})
        row.update({f"personalized.{k}": v for k, v in (r.get("personalized") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_metrics_csv(report: dict[str, Any], path: Path) -> None:
    frame = rounds_frame(report)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


NOT_APPLICABLE = "n/a"
UNSUPPORTED = "--"
LEGEND = (f"{NOT_APPLICABLE} = not applicable to this row; {UNSUPPORTED} = level the data size "
          "cannot support")


def _pct(value: Any) -> str:
    if value is None:
        return NOT_APPLICABLE
    if isinstance(value, float) and math.isnan(value):
        return UNSUPPORTED
    return f"{100.0 * float(value):.2f}"


def table_columns(sample: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, metric key, column title) of the headline columns, levels chosen by data size."""
    gen = sample.get("generic") or {}
    per = sample.get("personalized") or {}
    cols = [("generic", k, f"G 1:1 {k.upper()}") for k in
            headline_levels(gen, "tar", "num_impostor")]
    cols += [("generic", k, f"G 1:N {k.upper()}") for k in
             headline_levels(gen, "tpir", "num_nonmated")]
    cols += [("generic", "rank1", "G rank-1")]
    cols += [("personalized", k, f"P 1:1 {k.upper()}") for k in
             headline_levels(per, "tar", "num_impostor")]
    cols += [("personalized", k, f"P 1:N {k.upper()}") for k in
             headline_levels(per, "tpir", "num_nonmated")]
    cols += [("personalized", "rank1", "P rank-1")]
    return cols


def results_table(rows: list[tuple[str, dict[str, Any]]], first_column: str = "model",
                  extra: tuple[str, ...] = ()) -> str:
    """Markdown table of named result rows ({"generic": .., "personalized": ..}), in percent;
    ``extra`` names plain per-row values (e.g. "seconds") appended as the last columns."""
    sample = next((r for _, r in rows if r), {})
    cols = table_columns(sample)
    header = f"| {first_column} | " + " | ".join([c[2] for c in cols] + list(extra)) + " |"
    sep = "|---|" + "|".join("---:" for _ in range(len(cols) + len(extra))) + "|"
    lines = [header, sep]
    for name, res in rows:
        cells = [_pct((res.get(sec) or {}).get(key)) for sec, key, _ in cols]
        cells += [f"{float(res[key]):.1f}" if key in res else "" for key in extra]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(report: dict[str, Any]) -> str:
    """The run's headline table: pre-trained vs final (and each personalised model variant),
    then the marker legend. Without DFC (``dfc=false``) there is no Pi_l: the
    ``[Theta_l, Pi_l]`` row would repeat Theta_l and is left out."""
    rows: list[tuple[str, dict[str, Any]]] = []
    config = report.get("config") or {}
    if report.get("pretrained"):
        rows.append(("pre-trained (Theta_g^0)", report["pretrained"]))
    final = report.get("final")
    if final:
        failed = len((report.get("failures") or {}).get("final-evaluation") or [])
        note = f" [personalised evaluation failed on {failed} client(s)]" if failed else ""
        rows.append((f"final ({config.get('strategy', '')}){note}", final))
        by_model = final.get("personalized_by_model") or {}
        variants = [("global", "Theta_g"), ("local", "Theta_l")]
        if config.get("dfc", True):
            variants.append(("personal", "[Theta_l, Pi_l]"))
        for name, label in variants:
            if name in by_model:
                rows.append((f"  personalised with {label}",
                             {"generic": {}, "personalized": by_model[name]}))
    return results_table(rows) + f"\n\n{LEGEND}."
