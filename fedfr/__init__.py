"""fedfr: federated open-set recognition (FedFR, Liu et al.) in plain PyTorch.

This package holds everything that does not need Flower: data, models, losses, training steps
and evaluation. The Flower apps (``clients/``, ``server/``, ``strategies/``) are thin adapters.
"""

__version__ = "0.1.0"
