"""The server's round loop: pre-training, rounds with checkpoints, evaluation and the report.

Generic over workloads: the run-config key ``task`` names the ``fedfr.workloads`` entry that opens
the data, supplies the initial arrays, evaluates the global model (generic protocol) and formats
the results table; this loop never touches a model or an image itself.

Flower's ``Strategy.start`` has no checkpoint or resume, so the loop is written out here (the
strategy still does sampling, validation and aggregation). After every round the global arrays
and the history are checkpointed in ``<output-dir>/checkpoints``; a killed run restarted with the
same config resumes after the last finished round. Clients keep their personal state on their own
disk, stamped by round, so the resumed run ends where an uninterrupted one ends.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedfr.checkpoint import latest_round, save_round
from fedfr.config import Config
from fedfr.errors import ConfigError
from fedfr.face.evaluation.cache import model_digest
from fedfr.face.evaluation.run import split_by_model
from fedfr.report import write_json, write_metrics_csv
from fedfr.workloads import get_workload
from server import exit_status
from server.accounting import attribute_replies, missing_replies, node_counts
from server.messaging import CountingStream, in_push_order, send_and_receive, stream_replies
from strategies import get_strategy, strategy_options
from strategies.fedface import PRIVACY_COST as PRIVACY_COST_FEDFACE
from strategies.fedfr import FedFR
from strategies.records import fast_arrays, tensor_view, unpack_arrays

log = logging.getLogger("fedfr.server")


def _arrays_to_tensors(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """The arrays as tensors for ``torch.save`` (checkpoints, final model): zero-copy views of
    the record's bytes (``strategies.records.tensor_view``), or copies with Flower's codec."""
    if fast_arrays():
        return {k: tensor_view(v) for k, v in arrays.items()}
    return {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}


def streams_replies(strategy: Any) -> bool:
    """True when the strategy aggregates with FedFR's one-pass ``aggregate_train``, which folds
    each reply into a running mean: replies are then streamed, never all held at once."""
    return type(strategy).aggregate_train is FedFR.aggregate_train


def federated_personal_eval(grid: Grid, cfg: Config, arrays: ArrayRecord, server_round: int,
                            experiment_id: str, models: list[str]) -> dict[str, Any]:
    """Ask every node to run the personalised protocol; average their scalars over clients."""
    node_ids = sorted(grid.get_node_ids())
    conf = ConfigRecord({"server-round": server_round, "experiment-id": experiment_id,
                         "config-digest": cfg.digest(), "eval-models": ",".join(models)})
    msgs = [Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=nid,
                    message_type=MessageType.EVALUATE) for nid in node_ids]
    # polls faster than Flower's own send_and_receive
    replies = list(attribute_replies(msgs, send_and_receive(grid, msgs, cfg.round_timeout)))
    per_client = []
    failures = missing_replies(msgs, {r.metadata.src_node_id for r in replies},
                               cfg.round_timeout, f"evaluation {server_round}")
    # fixed order (node id): the float mean over clients must not depend on arrival order
    for reply in sorted(replies, key=lambda r: r.metadata.src_node_id):
        if reply.has_error():
            failures.append({"node_id": reply.metadata.src_node_id,
                             "reason": reply.error.reason})
            log.warning("personalised evaluation failed on node %s: %s",
                        reply.metadata.src_node_id, reply.error.reason)
            continue
        metrics = reply.content["metrics"]
        per_client.append({k: float(v) for k, v in metrics.items() if k != "num-examples"})
    by_model = split_by_model(per_client)
    for m in by_model.values():
        m["num_clients"] = float(len(per_client))
    return {"by_model": by_model, "failures": failures, "num_clients": len(per_client)}


def run_federation(grid: Grid, cfg: Config) -> dict[str, Any]:
    """Run (or resume) the whole experiment on ``grid``; returns the report dict."""
    t_start, started_at = time.perf_counter(), time.time()
    cfg = cfg.with_clients(len(list(grid.get_node_ids())))
    out = cfg.output_path
    workload = get_workload(cfg.task)
    workload.check_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    exit_status.clear_results(out)  # an older run's table must never pass for this run's
    ckpt_dir = out / "checkpoints"
    ws = workload.open_server_data(cfg)
    ws.split.save(out / "split.json")
    log.info("task %s, split %s: %s", cfg.task, ws.split.digest(), ws.split.summary())

    arrays0, pre_info = workload.initial_arrays(cfg, ws)
    backbone0, phi0 = unpack_arrays(arrays0)  # content of Theta_g^0 (and Phi_g^0 where sent)
    pre_digest = model_digest({**backbone0, "phi": phi0} if phi0 is not None else backbone0)
    t_pre = time.perf_counter()
    personal_model = workload.personal_model(cfg)
    strategy = get_strategy(cfg.strategy, fraction_train=cfg.fraction_train,
                            min_train_nodes=cfg.min_train_nodes,
                            min_available_nodes=cfg.min_train_nodes, **strategy_options(cfg))

    resumed = latest_round(ckpt_dir) if cfg.resume else None
    if resumed is not None:
        start, tensors, state = resumed
        if state.get("config-digest") != cfg.digest():
            raise ConfigError(
                f"{ckpt_dir}: checkpoints belong to a run with other settings (digest "
                f"{state.get('config-digest')} != {cfg.digest()}); use a new output-dir or "
                "set resume=false to start over")
        arrays = ArrayRecord({k: v for k, v in tensors.items()})
        experiment_id, history, pretrained = state["experiment-id"], state["rounds"], \
            state["pretrained"]
        if pretrained.get("model-digest", pre_digest) != pre_digest:
            raise ConfigError(
                f"{ckpt_dir}: checkpoints start from another pre-trained model (digest "
                f"{pretrained['model-digest']} != {pre_digest}, {pre_info['path']}); use a new "
                "output-dir or set resume=false to start over")
        log.info("resuming experiment %s after round %d from %s", experiment_id, start, ckpt_dir)
    else:
        start, history = 0, []
        experiment_id = uuid.uuid4().hex[:12]
        arrays = arrays0
        log.info("evaluating the pre-trained model")
        pers = federated_personal_eval(grid, cfg, arrays, 0, experiment_id, ["global"])
        pretrained = {"generic": workload.evaluate_generic(cfg, ws, arrays0),
                      "personalized": pers["by_model"].get("global", {}),
                      "failures": pers["failures"], "model-digest": pre_digest}
        save_round(ckpt_dir, 0, _arrays_to_tensors(arrays),
                   {"config-digest": cfg.digest(), "experiment-id": experiment_id,
                    "rounds": history, "pretrained": pretrained})

    report: dict[str, Any] = {
        "config": cfg.to_dict(),
        "split": {"manifest": str(out / "split.json"), "digest": ws.split.digest(),
                  "summary": ws.split.summary()},
        "pretrained": pretrained, "rounds": history, "final": None,
        "experiment-id": experiment_id, "pretraining": pre_info,
    }
    if cfg.strategy == "fedface":
        report["privacy"] = PRIVACY_COST_FEDFACE
    for rnd in range(start + 1, cfg.num_server_rounds + 1):
        t0 = time.perf_counter()
        random.seed(cfg.seed * 100_003 + rnd)  # client sampling is reproducible
        conf = ConfigRecord({"experiment-id": experiment_id, "config-digest": cfg.digest()})
        msgs = list(strategy.configure_train(rnd, arrays, conf, grid))
        # folded in push order whatever the arrival order (parallel actors): the sequential
        # run's mean, bit for bit
        stream = in_push_order(msgs, attribute_replies(msgs, stream_replies(grid, msgs,
                                                                            cfg.round_timeout)))
        # a strategy that may iterate twice gets a list
        replies = CountingStream(stream if streams_replies(strategy) else list(stream))
        new_arrays, metrics = strategy.aggregate_train(rnd, replies)
        row: dict[str, Any] = {"round": rnd, "num-sent": len(msgs),
                               "num-received": replies.count,
                               "aggregated": new_arrays is not None}
        row.update({k: v for k, v in (metrics or {}).items()})
        row["failures"] = strategy.failures.get(rnd, []) + missing_replies(
            msgs, replies.senders, cfg.round_timeout, f"round {rnd}")
        row.update(node_counts(len(msgs), row["failures"]))
        if new_arrays is None:
            log.warning("round %d: too few valid replies; keeping the previous global model", rnd)
        else:
            arrays = new_arrays
        row["train_seconds"] = time.perf_counter() - t0
        if rnd % cfg.eval_every == 0 or rnd == cfg.num_server_rounds:
            row["generic"] = workload.evaluate_generic(cfg, ws, arrays)
        if cfg.personal_eval_every and rnd % cfg.personal_eval_every == 0 \
                and rnd != cfg.num_server_rounds:
            pers = federated_personal_eval(grid, cfg, arrays, rnd, experiment_id,
                                           [personal_model])
            row["personalized"] = pers["by_model"].get(personal_model, {})
            row["evaluation-failures"] = pers["failures"]
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        save_round(ckpt_dir, rnd, _arrays_to_tensors(arrays),
                   {"config-digest": cfg.digest(), "experiment-id": experiment_id,
                    "rounds": history, "pretrained": pretrained})
        write_json(report, out / "report.json")
        write_metrics_csv(report, out / "metrics.csv")
        gen = row.get("generic", {})
        log.info("round %d/%d done in %.1f s: %s valid replies, generic rank-1 %.4f",
                 rnd, cfg.num_server_rounds, row["seconds"], row["nodes-replied"],
                 gen.get("rank1", float("nan")))

    log.info("final personalised evaluation on the clients")
    last = history[-1] if history else {}
    generic_final = last.get("generic")
    if generic_final is None:
        generic_final = workload.evaluate_generic(cfg, ws, arrays)
    pers = federated_personal_eval(grid, cfg, arrays, cfg.num_server_rounds, experiment_id,
                                   [m for m in cfg.final_eval_models.split(",") if m])
    by_model = pers["by_model"]
    report["final"] = {"generic": generic_final,
                       "personalized": by_model.get(personal_model, {}),
                       "personalized_model": personal_model,
                       "personalized_by_model": by_model}
    if history:
        history[-1]["personalized"] = report["final"]["personalized"]
    report["failures"] = {str(r["round"]): r["failures"] for r in history if r.get("failures")}
    report["failures"]["final-evaluation"] = pers["failures"]
    from server import messaging

    report["timing"] = {"pretraining_seconds": t_pre - t_start,
                        "total_seconds": time.perf_counter() - t_start,
                        # wall clock (time.time()): the benchmarks' start-up phases
                        "started_at": started_at, "first_reply_at": messaging.first_reply_at}
    report["status"] = exit_status.judge(report, cfg.allow_partial)
    torch.save(_arrays_to_tensors(arrays), out / "final_model.pt")
    write_json(report, out / "report.json")
    write_metrics_csv(report, out / "metrics.csv")
    table = workload.summary_table(report) + "\n\n" + exit_status.rounds_note(report)
    if "privacy" in report:
        table += f"\n\nPrivacy cost: {report['privacy']}."
    (out / "results.md").write_text(table + "\n")
    exit_status.write_status(out, report["status"]["status"], report["status"]["problems"],
                             experiment_id)
    log.info("results (%%), written to %s:\n%s", out, table)
    exit_status.raise_if_failed(report["status"], out)
    return report
