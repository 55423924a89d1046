"""The run configuration: defaults mirrored in pyproject, validation with clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedfr.config import DEFAULTS, resolve
from fedfr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_config_matches_defaults() -> None:
    app_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert list(app_cfg) == list(DEFAULTS)
    for key, value in DEFAULTS.items():
        assert app_cfg[key] == value, key
        assert type(app_cfg[key]) is type(value), key


def test_pyproject_names_the_apps() -> None:
    comp = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["components"]
    assert comp == {"serverapp": "server.app:app", "clientapp": "clients.app:app"}


def test_resolve_coerces_and_validates() -> None:
    cfg = resolve({"lr": "0.5", "local-epochs": 3.0, "dfc": "false"})
    assert cfg.lr == 0.5 and cfg.local_epochs == 3 and cfg.dfc is False
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve({"hn-treshold": 0.3})
    with pytest.raises(ConfigError, match="'strategy'"):
        resolve({"strategy": "fedprox"})
    with pytest.raises(ConfigError, match="'local-epochs'"):
        resolve({"local-epochs": 1.5})
    with pytest.raises(ConfigError, match="'data-root'"):
        resolve({"dataset": "folder"})
    with pytest.raises(ConfigError, match="'hn-threshold'"):
        resolve({"hn-threshold": 2.0})


def test_auto_num_clients_and_digest() -> None:
    cfg = resolve()
    assert cfg.num_clients == 0
    four = cfg.with_clients(4)
    assert four.num_clients == 4 and four.digest() != cfg.digest()
    assert four.with_clients(7) is four
    assert resolve({"output-dir": "/elsewhere"}).digest() == cfg.digest()
