"""A run that failed says so: exit statuses, status.json, results.md, config errors before
Flower starts, one-line user errors for every entry point, report markers."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

import clients.app
from fedfr.config import resolve
from fedfr.errors import ConfigError, RunFailedError
from fedfr.report import summary_table
from server import inprocess, launch, simulate
from server.exit_status import STATUS_FILE, read_status, write_status
from server.federation import run_federation
from server.inprocess import InProcessGrid


class TrainFailsOnce:
    """A ClientApp, except that partition 1 raises when asked to train in round 1."""

    def __init__(self, app=clients.app.app) -> None:
        self.app = app

    def __call__(self, msg, context):
        conf = msg.content["config"] if "config" in msg.content else {}
        if (msg.metadata.message_type == "train" and int(conf["server-round"]) == 1
                and int(context.node_config["partition-id"]) == 1):
            raise RuntimeError("simulated crash in round 1")
        return self.app(msg, context)


def _one_round(tiny_config: dict, **extra) -> dict:
    return {**tiny_config, "num-server-rounds": 1, **extra}


def test_round_not_aggregated_fails_the_run(tiny_config: dict, caplog) -> None:
    cfg = resolve(_one_round(tiny_config))
    grid = InProcessGrid(TrainFailsOnce(), 2, cfg.to_dict())
    with caplog.at_level(logging.INFO, logger="fedfr"), \
            pytest.raises(RunFailedError, match="round 1: not aggregated") as failed:
        run_federation(grid, cfg)
    assert failed.value.exit_code == 1
    # the round log counts the valid reply it got (it said "0 replies")
    assert "round 1/1 done" in caplog.text and ": 1 valid replies" in caplog.text
    out = cfg.output_path
    assert read_status(out)["status"] == "failed"
    results = (out / "results.md").read_text()
    assert "Rounds aggregated: 0 of 1." in results
    assert "r1 1/2 (not aggregated)" in results
    assert "- round 1: not aggregated (1 of 2 clients replied validly)" in results


def test_allow_partial_turns_failures_into_a_marked_result(tiny_config: dict) -> None:
    cfg = resolve(_one_round(tiny_config, **{"allow-partial": True}))
    grid = InProcessGrid(TrainFailsOnce(), 2, cfg.to_dict())
    report = run_federation(grid, cfg)
    assert report["status"] == {"status": "partial",
                                "problems": ["round 1: not aggregated (1 of 2 clients replied "
                                             "validly)"]}
    assert read_status(cfg.output_path)["status"] == "partial"
    assert "Status: PARTIAL result" in (cfg.output_path / "results.md").read_text()
    # allow-partial does not change what a run computes
    assert cfg.digest() == resolve(_one_round(tiny_config)).digest()


def test_inprocess_exit_statuses(tiny_config: dict, monkeypatch, capsys) -> None:
    text = inprocess.format_run_config(_one_round(tiny_config))
    monkeypatch.setattr(clients.app, "app", TrainFailsOnce(clients.app.app))
    assert inprocess.main(["--run-config", text]) == 1
    err = capsys.readouterr().err
    assert "server.inprocess: error: run failed (1 problem(s)): round 1: not aggregated" in err
    assert inprocess.main(["--run-config", text + " allow-partial=true"]) == 0
    # a user error: one line naming key, value and the closest key; exit 2
    assert inprocess.main(["--run-config", "num-server-round=3"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("server.inprocess: error: unknown config key(s): "
                                            "'num-server-round' = 3; did you mean "
                                            "'num-server-rounds'?")
    assert "Traceback" not in err
    assert inprocess.main(["--debug", "--run-config", "num-clients='two'"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "config 'num-clients': expected an integer, got 'two'" in err


@pytest.mark.parametrize("module", [simulate, launch])
@pytest.mark.parametrize("text, message", [
    ("num-client=2", "unknown config key(s): 'num-client' = 2; did you mean 'num-clients'?"),
    ("lr='fast'", "config 'lr': expected a number, got 'fast'"),
    ("dataset='folder'", "config 'data-root': required for dataset 'folder'"),
    ("dataset='folder' data-root='/no/such/faces'",
     "config 'data-root': '/no/such/faces' does not exist"),
])
def test_wrappers_refuse_bad_config_before_flower_starts(module, text, message, tmp_path,
                                                         monkeypatch, capsys) -> None:
    started = []
    monkeypatch.setattr(simulate, "run", lambda *a, **k: started.append(a) or 0)
    monkeypatch.setattr(launch, "LocalFederation", lambda *a, **k: started.append(a))
    argv = ["--run-config", text]
    argv += ["--work", str(tmp_path / "w")] if module is launch else \
        ["--flwr-home", str(tmp_path / "h")]
    assert module.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not started


def test_simulate_exit_status_comes_from_the_run_status(tmp_path: Path, monkeypatch,
                                                        capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("an older run's table\n")
    write_status(out, "ok", [])
    runs = []

    def fake_flwr_run(run_config, *args, **kwargs):  # flwr exits 0 even when the app raised
        runs.append(run_config)
        assert not (out / "results.md").exists(), "stale results.md left in place"
        assert not (out / STATUS_FILE).exists(), "stale status.json left in place"
        return 0

    monkeypatch.setattr(simulate, "run", fake_flwr_run)
    argv = ["--run-config", f"output-dir='{out}'", "--flwr-home", str(tmp_path / "h")]
    assert simulate.main(argv) == 1  # the ServerApp wrote no status: it did not finish
    assert "wrote no" in capsys.readouterr().err
    monkeypatch.setattr(simulate, "clear_results", lambda out: None, raising=False)
    for status, code in (("failed", 1), ("partial", 0), ("ok", 0)):
        write_status(out, status, ["round 2: not aggregated"] if status != "ok" else [])
        assert simulate.run_outcome(0, out) == code
    assert simulate.run_outcome(3, out) == 3


def test_server_app_records_a_config_error(tmp_path: Path, caplog) -> None:
    from server.exit_status import record_server_error

    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="fedfr"):
        try:
            resolve({"output-dir": str(out), "lr": "fast"})
        except ConfigError as exc:
            record_server_error({"output-dir": str(out), "lr": "fast"}, exc)
    assert "run stopped: config 'lr': expected a number, got 'fast'" in caplog.text
    assert read_status(out) == {"status": "failed", "experiment-id": "",
                                "problems": ["config 'lr': expected a number, got 'fast'"]}


def _report(dfc: bool) -> dict:
    metrics = {"tar@1e-01": 0.5, "tar@1e-03": math.nan, "num_impostor": 20.0, "rank1": 0.75}
    by_model = {"global": metrics, "local": metrics, "personal": metrics}
    return {"config": {"strategy": "fedfr", "dfc": dfc},
            "pretrained": {"generic": metrics, "personalized": metrics},
            "final": {"generic": metrics, "personalized": metrics,
                      "personalized_by_model": by_model},
            "failures": {"final-evaluation": []}}


def test_report_markers_and_rows_without_dfc() -> None:
    with_dfc, without = summary_table(_report(True)), summary_table(_report(False))
    assert "[Theta_l, Pi_l]" in with_dfc and "[Theta_l, Pi_l]" not in without
    assert "personalised with Theta_l" in without
    rows = [line for line in without.splitlines() if line.startswith("| ")]
    header, personal_row = rows[0], rows[-1]
    assert "G 1:1 TAR@1E-01" in header
    cells = [c.strip() for c in personal_row.strip("|").split("|")]
    assert cells[1] == "n/a"  # generic metrics do not apply to a personalised row
    assert "n/a = not applicable to this row; -- = level the data size cannot support" in without
    # a level the data size cannot support (nan) prints "--", never "n/a"
    report = _report(True)
    report["final"]["generic"] = {**report["final"]["generic"], "tar@1e-01": math.nan}
    final_row = next(line for line in summary_table(report).splitlines()
                     if line.startswith("| final"))
    assert "| -- |" in final_row and "n/a" not in final_row


def test_report_json_has_status(tiny_config: dict) -> None:
    report = inprocess.run_inprocess(_one_round(tiny_config))
    assert report["status"] == {"status": "ok", "problems": []}
    out = Path(tiny_config["output-dir"])
    assert json.loads((out / "report.json").read_text())["status"]["status"] == "ok"
    assert "Status: complete" in (out / "results.md").read_text()
