"""Re-ID results in Table 7.5's layout: clients (personalised) and unseen sets (generic), mAP / R1.

Reads a federation report (``report.json``'s dict): ``pretrained`` / ``final`` hold ``generic``
metrics with ``<unseen set>.mAP`` / ``.rank1`` keys and personalised metrics per model with
``<client set>.mAP`` / ``.rank1`` keys (fractions; printed as percentages).
"""

from __future__ import annotations

import math
from typing import Any

AP_NAMES = {"noninterp": "non-interpolated AP (torchreid / fast-reid)",
            "trapezoid": "trapezoid AP (Market-1501 MATLAB / FedReID)"}


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100.0 * float(v):.1f}"


def _names(value: str) -> list[str]:
    return [n.strip() for n in str(value).split(",") if n.strip()]


def table(rows: list[tuple[str, dict[str, Any]]], sets: list[str], first: str = "method",
          mean: bool = False) -> str:
    """Markdown: one row per (label, metrics); columns mAP and R1 of each set (+ their means)."""
    head = [first] + [f"{s} {m}" for s in sets for m in ("mAP", "R1")]
    if mean:
        head += ["mean mAP", "mean R1"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, m in rows:
        cells = [label]
        for s in sets:
            cells += [_pct(m.get(f"{s}.mAP")), _pct(m.get(f"{s}.rank1"))]
        if mean:
            cells += [_pct(m.get("mAP")), _pct(m.get("rank1"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_7_5(report: dict[str, Any]) -> str:
    """The run's results as Table 7.5: clients (personalised, per model) and unseen (generic)."""
    cfg = report.get("config") or {}
    clients, unseen = _names(cfg.get("reid-clients", "")), _names(cfg.get("reid-unseen", ""))
    if 0 < int(cfg.get("num-clients") or 0) < len(clients):
        clients = clients[:int(cfg["num-clients"])]  # the datasets that took part
    strategy = "FedFR" if cfg.get("strategy") == "fedfr" else "FedAvg"
    pre = report.get("pretrained") or {}
    final = report.get("final") or {}
    by_model = final.get("personalized_by_model") or {}
    client_rows = [("pre-trained (Theta_g^0)", pre.get("personalized") or {})]
    for name, label in (("global", "Theta_g"), ("local", "Theta_l"),
                        ("personal", "[Theta_l, Pi_l]")):
        if name in by_model:
            client_rows.append((f"{strategy} {label}", by_model[name]))
    unseen_rows = [("pre-trained (Theta_g^0)", pre.get("generic") or {})]
    if final.get("generic"):
        unseen_rows.append((f"{strategy} Theta_g", final["generic"]))
    ap = AP_NAMES.get(cfg.get("reid-ap", ""), cfg.get("reid-ap", "?"))
    return (f"Clients (personalised: each client's query / gallery), mAP / R1 in %, {ap}:\n\n"
            + table(client_rows, clients)
            + f"\n\nUnseen sets (generic, Theta_g), mAP / R1 in %, {ap}:\n\n"
            + table(unseen_rows, unseen, mean=True))
