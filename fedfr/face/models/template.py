"""Backbones to be loaded at once: copies of one cached, initialised model per process.

Building a backbone runs its random initialisation (Kaiming / Xavier over every weight), which
for ``small_cnn`` at d = 512 costs ~30 ms of CPU - more than a forward pass over a batch -
and a client round builds three of them (the frozen global model, the trained copy, the previous
local model), every evaluation one per model. Where a state_dict is loaded right after, that
initialisation is wasted: ``model_factory(cfg)()`` returns a ``copy.deepcopy`` of a template built
once per process and configuration instead (a memory copy). Every parameter and buffer is then
overwritten by ``load_state_dict``, so the result is bit for bit the model a fresh build would
give. Use ``model_from_config`` where the random initialisation itself matters (pre-training).
``FEDFR_FRESH_MODELS=1`` restores fresh builds (the benchmarks' "before" runs).
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable
from typing import Any

from torch import nn

from fedfr.face.models import model_from_config

_templates: dict[tuple, nn.Module] = {}
_lock = threading.Lock()


def _key(cfg: Any) -> tuple:
    return (cfg.model, int(cfg.embedding_size), int(cfg.image_size))


def model_factory(cfg: Any) -> Callable[[], nn.Module]:
    """A zero-argument builder of ``cfg``'s backbone, to be followed by ``load_state_dict``.

    The returned modules are independent copies in training mode; their initial weights are
    those of a template (not fresh random numbers).
    """
    key = _key(cfg)
    if os.environ.get("FEDFR_FRESH_MODELS") == "1":  # the original path, for before/after runs
        return lambda: model_from_config(cfg)

    def build() -> nn.Module:
        with _lock:
            template = _templates.get(key)
            if template is None:
                template = _templates[key] = model_from_config(cfg)
            return copy.deepcopy(template)
    return build


def loaded_model(cfg: Any, state: dict) -> nn.Module:
    """``cfg``'s backbone holding ``state`` (a state_dict), via ``model_factory``."""
    model = model_factory(cfg)()
    model.load_state_dict(state)
    return model
