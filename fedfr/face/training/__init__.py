"""Training steps: central CosFace pre-training, the clients' local round, central upper bound."""

from fedfr.face.training.local import LocalData, LocalResult, PersonalState, train_local_round
from fedfr.face.training.pretrain import train_cosface

__all__ = ["LocalData", "LocalResult", "PersonalState", "train_local_round", "train_cosface"]
