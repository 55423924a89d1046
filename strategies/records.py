"""The layout of FedFR's messages, shared by the ServerApp, the strategies and the ClientApp.

A train message carries ``arrays`` (ArrayRecord: the backbone's state_dict under
``backbone.<name>`` and, for FedFR, the public class matrix under ``phi``) and ``config``; a train
reply carries the same ``arrays`` keys and ``metrics`` with exactly ``COUNT_KEYS``.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord

ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"
#: prefix of every backbone tensor in the ArrayRecord
BACKBONE_PREFIX = "backbone."
#: key of the public class-embedding matrix Phi_g (K_g x d)
PHI_KEY = "phi"
#: the counters every train reply carries; all are summed over valid replies
COUNT_KEYS = ("num-examples", "num-hard-negatives", "num-steps")


def pack_arrays(backbone: dict[str, torch.Tensor], phi: torch.Tensor | None) -> ArrayRecord:
    """(backbone state_dict, phi or None) -> ArrayRecord with ``backbone.*`` [+ ``phi``] keys."""
    sd = {f"{BACKBONE_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in backbone.items()}
    if phi is not None:
        sd[PHI_KEY] = phi.detach().cpu().contiguous()
    return ArrayRecord(sd)


def unpack_arrays(arrays: ArrayRecord) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """ArrayRecord -> (backbone state_dict without the prefix, phi or None)."""
    sd = arrays.to_torch_state_dict()
    n = len(BACKBONE_PREFIX)
    backbone = {k[n:]: v for k, v in sd.items() if k.startswith(BACKBONE_PREFIX)}
    return backbone, sd.get(PHI_KEY)
