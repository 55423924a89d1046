"""A run's outcome: did its final model come from every round asked for, and did its final
evaluation succeed on every client? Written to ``<output-dir>/status.json`` and summarised
under the results table, so that no wrapper or reader mistakes a failed run for a result.

status.json: ``{"status": "ok" | "partial" | "failed", "problems": [str, ...],
"experiment-id": str}``. ``failed`` is also written when the ServerApp stops on an error
(``problems`` then holds the error's one-line message). ``partial``: problems accepted with
``allow-partial=true``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from fedfr.errors import RunFailedError

log = logging.getLogger("fedfr.server")
STATUS_FILE = "status.json"
#: files of a previous run that a new run replaces at its end (removed when it starts)
RESULT_FILES = ("results.md", STATUS_FILE)


def round_problems(rounds: list[dict[str, Any]], num_rounds: int) -> list[str]:
    """One line per round asked for that is missing or was not aggregated."""
    done = {int(r["round"]): r for r in rounds}
    out = []
    for rnd in range(1, num_rounds + 1):
        row = done.get(rnd)
        if row is None:
            out.append(f"round {rnd}: not run")
        elif not row.get("aggregated", False):
            out.append(f"round {rnd}: not aggregated ({row.get('nodes-replied', 0)} of "
                       f"{row.get('nodes-expected', 0)} clients replied validly)")
    return out


def _reason(text: str) -> str:
    """A failure reason without Flower's ``<class 'X'>:<'...'>`` wrapping."""
    m = re.fullmatch(r"<class '([^']+)'>:<'(.*)'>", str(text), flags=re.S)
    return m.group(2) if m else str(text)


def evaluation_problems(report: dict[str, Any]) -> list[str]:
    """One line per failed client evaluation: final first, then pre-trained and per-round."""
    def lines(what: str, failures: list[dict[str, Any]] | None) -> list[str]:
        return [f"{what} evaluation failed on node {f['node_id']}: {_reason(f['reason'])}"
                for f in failures or []]

    out = lines("final", (report.get("failures") or {}).get("final-evaluation"))
    out += lines("pre-trained", (report.get("pretrained") or {}).get("failures"))
    for row in report.get("rounds") or []:
        out += lines(f"round {row['round']}", row.get("evaluation-failures"))
    return out


def run_problems(report: dict[str, Any]) -> list[str]:
    """Everything that keeps the report from being the result of the run asked for."""
    num_rounds = int(report["config"].get("num-server-rounds", 0))
    return round_problems(report.get("rounds") or [], num_rounds) + evaluation_problems(report)


def rounds_note(report: dict[str, Any]) -> str:
    """Lines for results.md: rounds aggregated, valid replies per round, the run's status and
    its problems (rounds not aggregated, failed evaluations), one per line."""
    rounds = report.get("rounds") or []
    num_rounds = int(report["config"].get("num-server-rounds", 0))
    aggregated = [r["round"] for r in rounds if r.get("aggregated")]
    replies = ", ".join(
        f"r{r['round']} {r.get('nodes-replied', 0)}/{r.get('nodes-expected', 0)}"
        + ("" if r.get("aggregated") else " (not aggregated)") for r in rounds)
    lines = [f"Rounds aggregated: {len(aggregated)} of {num_rounds}"
             + (f" ({', '.join(map(str, aggregated))})" if 0 < len(aggregated) < num_rounds
                else "") + ".",
             f"Valid client replies per round: {replies or 'none'}."]
    status = report.get("status") or {}
    problems = status.get("problems") or []
    if status.get("status") == "partial":
        lines.append(f"Status: PARTIAL result (allow-partial=true), {len(problems)} problem(s):")
    elif status.get("status") == "failed":
        lines.append(f"Status: FAILED, {len(problems)} problem(s) (allow-partial=true would "
                     "accept a partial result):")
    elif status.get("status") == "ok":
        lines.append("Status: complete (every round aggregated, every evaluation succeeded).")
    lines += [f"- {p}" for p in problems]
    return "\n".join(lines)


def write_status(out: Path, status: str, problems: list[str], experiment_id: str = "") -> dict:
    """Write ``<out>/status.json``; returns its content."""
    doc = {"status": status, "problems": list(problems), "experiment-id": experiment_id}
    from fedfr.checkpoint import atomic_write_text  # imports torch: only where a run writes

    atomic_write_text(json.dumps(doc, indent=2), out / STATUS_FILE)
    return doc


def read_status(out: Path) -> dict[str, Any] | None:
    """``<out>/status.json``, or None when the run wrote none (it did not finish)."""
    try:
        return json.loads((out / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def clear_results(out: Path) -> None:
    """Remove a previous run's results.md and status.json (so none is mistaken for this run's).
    """
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)


def judge(report: dict[str, Any], allow_partial: bool) -> dict[str, Any]:
    """The run's status dict ({"status", "problems"}) from its report; logs the problems."""
    problems = run_problems(report)
    if not problems:
        return {"status": "ok", "problems": []}
    for p in problems:
        log.warning("%s", p)
    return {"status": "partial" if allow_partial else "failed", "problems": problems}


def raise_if_failed(status: dict[str, Any], out: Path) -> None:
    """RunFailedError (exit 1) with one line when ``status`` is failed."""
    if status["status"] != "failed":
        return
    problems = status["problems"]
    raise RunFailedError(
        f"run failed ({len(problems)} problem(s)): {problems[0]}"
        + (f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
        + f"; details in {out / 'results.md'}; allow-partial=true accepts a partial result")


def record_server_error(run_config: dict[str, Any], exc: BaseException) -> None:
    """Log a user error of the ServerApp as one ERROR line and write ``status.json`` = failed
    into the run's output-dir (also when the config itself is invalid), for the wrappers."""
    from fedfr.config import DEFAULTS, resolve_path
    from fedfr.errors import user_error_message

    message = user_error_message(exc) or f"{type(exc).__name__}: {exc}"
    log.error("run stopped: %s", message)
    try:
        out = resolve_path(str(run_config.get("output-dir", DEFAULTS["output-dir"])))
        if read_status(out) is None or not isinstance(exc, RunFailedError):
            out.mkdir(parents=True, exist_ok=True)
            write_status(out, "failed", [message])
    except OSError as err:  # the status file is a courtesy; the error itself is what counts
        log.error("cannot write %s in the output-dir: %s", STATUS_FILE, err)
