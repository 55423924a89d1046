"""The upper bound of Table 7.1: central training on all identities (public + every client's).

Starting from the pre-trained Theta_g^0 / Phi_g^0, CosFace is trained over D_g and all clients'
private training images together, with the class matrix [Phi_g ; W_1 ; ... ; W_C] (private rows
initialised to the mean features, as the clients do). The number of epochs defaults to the
federation's total local epochs (rounds x local epochs), so both see the data equally often.
"""

from __future__ import annotations

import torch

from fedfr.face.evaluation.features import embed
from fedfr.face.models import model_from_config
from fedfr.face.training.pretrain import train_cosface
from fedfr.hard_negatives import mean_class_features


def train_central(cfg, ws, backbone0: dict[str, torch.Tensor], phi0: torch.Tensor,
                  epochs: int | None = None) -> dict[str, torch.Tensor]:
    """Central CosFace on D_g u all clients' training images; returns the backbone state_dict."""
    model = model_from_config(cfg)
    model.load_state_dict(backbone0)
    pub_x, pub_y = ws.public()
    xs, ys, proxies = [pub_x], [pub_y], [phi0]
    offset = phi0.shape[0]
    for cid in range(len(ws.split.clients)):
        data = ws.client(cid)
        feats = embed(model, data.train_images, batch_size=cfg.eval_batch_size)
        proxies.append(mean_class_features(feats, data.train_labels, data.num_classes))
        xs.append(data.train_images)
        ys.append(data.train_labels + offset)
        offset += data.num_classes
    torch.manual_seed(cfg.seed)
    train_cosface(model, torch.cat(xs), torch.cat(ys), offset,
                  epochs=epochs if epochs is not None else cfg.num_server_rounds * cfg.local_epochs,
                  lr=cfg.lr, batch_size=cfg.batch_size, momentum=cfg.momentum,
                  weight_decay=cfg.weight_decay, s=cfg.cosface_s, m=cfg.cosface_m, seed=cfg.seed,
                  proxies=torch.cat(proxies), cosine_schedule=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
