"""Theta_g's features of other clients' test images are embedded once per model and shared."""

from __future__ import annotations

import torch

import fedfr.face.evaluation.run as run
from fedfr.config import resolve
from fedfr.face.models import model_from_config
from fedfr.face.workspace import open_workspace


def test_shared_other_client_features_equal_direct_embedding(tiny_config, monkeypatch):
    cfg = resolve({**tiny_config, "num-clients": 3}).with_clients(3)
    ws = open_workspace(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg)
    calls = []
    real = run.embed_eval

    def counting(cfg_, model_, images, head=None):
        calls.append(images.shape[0])
        return real(cfg_, model_, images, head)

    monkeypatch.setattr(run, "embed_eval", counting)
    for c in range(3):
        shared = run.embed_other_clients(cfg, ws, model, c)
        direct = real(cfg, model, ws.other_clients_test(c))
        # not bitwise: the batches group other images than before (float rounding only)
        torch.testing.assert_close(shared, direct, rtol=0, atol=1e-5)
    assert len(calls) == 3  # each client's test images embedded once for the three clients
    model2 = model_from_config(cfg)  # another model: embedded afresh
    run.embed_other_clients(cfg, ws, model2, 0)
    assert len(calls) == 5
    # not shared (a client's own model): same features, nothing kept
    direct = real(cfg, model2, ws.other_clients_test(1))
    torch.testing.assert_close(run.embed_other_clients(cfg, ws, model2, 1, share=False), direct,
                               rtol=0, atol=1e-5)
    assert len(calls) == 7
