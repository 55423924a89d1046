"""Prune -> fine-tune -> measure, and the report (JSON + markdown) of one run."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedfr.errors import ConfigError
from fedfr.pruning.constraints import Meter
from fedfr.pruning.cpo import CPOConfig, prune_cpo
from fedfr.pruning.global_pruning import GlobalConfig, PruneResult, prune_global
from fedfr.pruning.groups import channel_counts
from fedfr.pruning.impact import measure_latency
from fedfr.pruning.task import FineTuneSchedule, PruningTask, finetune
from fedfr.pruning.uniform import prune_uniform

log = logging.getLogger(__name__)

METHODS = ("caie", "cpo", "taylor", "l1", "uniform")


def prune(model: nn.Module, task: PruningTask | None, method: str,
          constraints: dict[str, float], global_cfg: GlobalConfig | None = None,
          cpo_cfg: CPOConfig | None = None, ignored: list[str] | None = None,
          example_input: torch.Tensor | None = None, progress: bool = True) -> PruneResult:
    """Dispatch to the pruner of ``method``; ``task`` may be None for uniform / l1."""
    gcfg = global_cfg or GlobalConfig()
    if method in ("caie", "taylor"):
        if task is None:
            raise ConfigError(f"method {method!r} needs training data (a task)")
        return prune_global(model, task, constraints, method, gcfg, ignored, progress)
    if method in ("uniform", "l1"):
        x = example_input if example_input is not None else task.example_input
        return prune_uniform(model, x, constraints, "sparsity" if method == "uniform" else "l1",
                             gcfg.min_ratio, gcfg.convention, ignored, gcfg.latency_repeats)
    if method == "cpo":
        if task is None:
            raise ConfigError("method 'cpo' needs training and validation data (a task)")
        return prune_cpo(model, task, cpo_cfg, ignored, progress)
    raise ConfigError(f"method must be one of {METHODS}, got {method!r}")


def _gpu_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    m, xc = copy.deepcopy(model).cuda().eval(), x.cuda()

    def timed() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            m(xc)
        torch.cuda.synchronize()
        return time.perf_counter() - t0
    for _ in range(5):
        timed()
    return 1e3 * sorted(timed() for _ in range(repeats))[repeats // 2]


def latencies(model: nn.Module, x: torch.Tensor, repeats: int = 30) -> dict[str, float]:
    """Median ms per forward of ``x``: CPU always, CUDA when available."""
    out = {"cpu_ms": 1e3 * measure_latency(copy.deepcopy(model).cpu(), x.cpu(), repeats)}
    if torch.cuda.is_available():
        out["gpu_ms"] = _gpu_ms(model, x, repeats)
    return out


def compare_latencies(before: nn.Module, after: nn.Module, x: torch.Tensor, rounds: int = 5,
                      repeats: int = 10) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of both models, measured in alternation (``rounds`` x ``repeats`` forwards
    each), so that a change in machine load does not bias the before/after ratio."""
    a, b = copy.deepcopy(before).cpu(), copy.deepcopy(after).cpu()
    xs = x.cpu()
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(measure_latency(a, xs, repeats))
        tb.append(measure_latency(b, xs, repeats))
    out_a = {"cpu_ms": 1e3 * sorted(ta)[rounds // 2]}
    out_b = {"cpu_ms": 1e3 * sorted(tb)[rounds // 2]}
    if torch.cuda.is_available():
        out_a["gpu_ms"] = _gpu_ms(before, x, 30)
        out_b["gpu_ms"] = _gpu_ms(after, x, 30)
    return out_a, out_b


def state_mb(model: nn.Module) -> float:
    """Size of the model's state dict (parameters + buffers) in MiB: its memory / storage."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20


def run(model: nn.Module, task: PruningTask | None, method: str, constraints: dict[str, float],
        schedule: FineTuneSchedule, global_cfg: GlobalConfig | None = None,
        cpo_cfg: CPOConfig | None = None, ignored: list[str] | None = None,
        example_input: torch.Tensor | None = None, measure_latency_ms: bool = True,
        progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` (in place, or replaced for CPO), fine-tune, and report."""
    x = example_input if example_input is not None else task.example_input
    gcfg = global_cfg or GlobalConfig()
    meter = Meter(x, gcfg.convention)
    before = meter(model)
    mb_before = state_mb(model)
    channels_before = channel_counts(model)
    metric_name = task.metric if task is not None else None
    metrics_before = task.evaluate(model) if task is not None else {}
    original = copy.deepcopy(model) if measure_latency_ms else None
    t0 = time.perf_counter()
    result = prune(model, task, method, constraints, gcfg, cpo_cfg, ignored, x, progress)
    model = result.model
    prune_s = time.perf_counter() - t0
    metrics_pruned = task.evaluate(model) if task is not None else {}
    ft_history = finetune(model, task, schedule, progress) if (
        task is not None and schedule.epochs > 0) else []
    metrics_after = task.evaluate(model) if task is not None else {}
    after = meter(model)
    lat_before, lat_after = compare_latencies(original, model, x) if measure_latency_ms \
        else ({}, {})
    report = {
        "method": method, "constraints": constraints, "convention": gcfg.convention,
        "input_shape": list(x.shape), "satisfied": result.satisfied,
        "flops": {"before": before["flops"], "after": after["flops"],
                  "remaining_pct": 100.0 * after["flops"] / before["flops"]},
        "params": {"before": before["params"], "after": after["params"],
                   "remaining_pct": 100.0 * after["params"] / before["params"]},
        "model_mib": {"before": mb_before, "after": state_mb(model)},
        "metric": metric_name,
        "metric_before": metrics_before.get(metric_name) if metric_name else None,
        "metric_pruned": metrics_pruned.get(metric_name) if metric_name else None,
        "metric_after": metrics_after.get(metric_name) if metric_name else None,
        "metrics_before": metrics_before, "metrics_after": metrics_after,
        "latency_before": lat_before, "latency_after": lat_after,
        "latency_threads": torch.get_num_threads(),
        "channels_before": channels_before, "channels_after": channel_counts(model),
        "prune_seconds": prune_s, "iterations": len(result.history) - 1,
        "finetune": {**asdict(schedule), "history": ft_history},
        "pruner_history": result.history,
    }
    return model, report


def markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of ``run``'s report."""
    def f(v: Any, fmt: str = "{:.3f}") -> str:
        return "n/a" if v is None else fmt.format(v)
    lines = [f"# Pruning report: {report['method']}", "",
             f"constraints (remaining fractions): {report['constraints']}; "
             f"all met: {report['satisfied']}; FLOPs convention: {report['convention']}; "
             f"input {report['input_shape']}", "",
             "| | before | after | remaining |", "|---|---|---|---|",
             f"| FLOPs (MACs) | {report['flops']['before']:.4g} | {report['flops']['after']:.4g}"
             f" | {report['flops']['remaining_pct']:.2f} % |",
             f"| parameters | {report['params']['before']:.4g} | "
             f"{report['params']['after']:.4g} | {report['params']['remaining_pct']:.2f} % |",
             f"| weights + buffers (MiB) | {report['model_mib']['before']:.2f} | "
             f"{report['model_mib']['after']:.2f} | "
             f"{100 * report['model_mib']['after'] / report['model_mib']['before']:.1f} % |"]
    if report["metric"]:
        lines.append(f"| {report['metric']} | {f(report['metric_before'])} | "
                     f"{f(report['metric_after'])} (pruned, before fine-tuning: "
                     f"{f(report['metric_pruned'])}) | |")
    for key in ("cpu_ms", "gpu_ms"):
        b, a = report["latency_before"].get(key), report["latency_after"].get(key)
        if b is not None and a is not None:
            lines.append(f"| {key[:3].upper()} latency, batch {report['input_shape'][0]} "
                         f"({report['latency_threads']} threads) | {b:.2f} ms | {a:.2f} ms | "
                         f"{100 * a / b:.1f} % |")
    lines += ["", "## Channels per layer", "", "| layer | before | after |", "|---|---|---|"]
    for name, c in report["channels_before"].items():
        lines.append(f"| {name} | {c} | {report['channels_after'].get(name, c)} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    import json
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "report.md").write_text(markdown(report))
