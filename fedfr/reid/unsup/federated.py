"""HSR at one federated site (``task = "unsup-reid"``, the FedUReID setting): one local round =
one HSR iteration (Fig. 4.2) on the site's own unlabelled training images, from the received
backbone, through ``run_hsr`` (``iterations = 1``, ``evaluate = False``).

The iteration extracts the site's global and part features, clusters them with DBSCAN on the
k-reciprocal Jaccard distance, refines the clusters with PBH, mines ICM's mutual inter-camera
pairs and trains ``local-epochs`` epochs with L_CE + L_trip + L_ICM (the row ``unsup-method`` of
Table 4.2). Features, distances, clusters, pseudo-labels and the fresh classifier stay in this
function; the caller sends the backbone only. DBSCAN's eps is re-estimated at every round (each
round is a new call; the centralised comparison sets ``eps_every_iteration`` to match).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fedfr.config import Config
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.models import ReidNet
from fedfr.reid.unsup.hsr import HSRConfig, run_hsr

#: the thesis's k-reciprocal neighbourhoods (k1, k2), clamped on sites with fewer images
K1, K2 = 20, 6


def hsr_config(cfg: Config, num_images: int | None = None) -> HSRConfig:
    """HSR's settings for a federation: the run's transform and local SGD (``lr``, momentum,
    weight decay, P x K from ``batch-size`` / ``reid-instances``), ``local-epochs`` per round,
    ``unsup-rho``, the row ``unsup-method``; k1 / k2 clamped below ``num_images``."""
    from fedfr.reid import federated as fed

    k1 = K1 if num_images is None else max(1, min(K1, num_images - 1))
    return HSRConfig(transform=fed.transform_config(cfg), iterations=1, epochs=cfg.local_epochs,
                     lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                     p=max(1, cfg.batch_size // cfg.reid_instances), k=cfg.reid_instances,
                     label_smoothing=cfg.reid_label_smoothing, rho=cfg.unsup_rho, k1=k1,
                     k2=min(K2, k1), eps_every_iteration=True,
                     batch_size=cfg.eval_batch_size, seed=cfg.seed
                     ).ablation(cfg.unsup_method)


def hsr_step(model: ReidNet, records: Sequence[ReidImage], hcfg: HSRConfig, seed: int,
             name: str = "site") -> dict[str, Any]:
    """Train ``model`` in place for one HSR iteration on ``records`` (their pids are read only
    for the row's diagnostics); returns that iteration's history row (stays on the site)."""
    target = ReidSplit(name=name, root=Path("."), train=list(records), query=[], gallery=[])
    run = run_hsr(model, target, replace(hcfg, iterations=1, seed=seed), evaluate=False)
    return run.history[0]
