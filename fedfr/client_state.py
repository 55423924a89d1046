"""Node-local store of a client's personal state (W_l, Pi_l, Omega_l, b, previous Theta_l).

State lives on the client's own disk, never in messages. Files are keyed by experiment and
partition and stamped with the round that produced them, so a resumed server that repeats round
t loads the state of round t-1 again (the run ends where an uninterrupted run ends), and memory
does not grow with the number of clients.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedfr.checkpoint import atomic_save, safe_load
from fedfr.errors import DataFormatError
from fedfr.face.training.local import PersonalState

_RE = re.compile(r"state-r(\d+)\.pt$")


class ClientStateStore:
    """Personal state files of one client: ``<root>/<experiment>/client-<pid>/state-rNNNN.pt``."""

    def __init__(self, root: str | Path, experiment: str, partition_id: int, keep: int = 2):
        self.folder = Path(root) / experiment / f"client-{partition_id:04d}"
        self.keep = keep

    def _files(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.folder.glob("state-r*.pt"):
            m = _RE.search(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def save(self, server_round: int, state: PersonalState) -> Path:
        path = self.folder / f"state-r{server_round:04d}.pt"
        atomic_save(state.to_dict(), path)
        files = self._files()
        for rnd, p in files[:-self.keep]:
            if rnd < server_round:
                p.unlink(missing_ok=True)
        return path

    def load_before(self, server_round: int) -> PersonalState | None:
        """The newest state saved by a round < ``server_round`` (None before the first)."""
        for rnd, p in reversed(self._files()):
            if rnd < server_round:
                try:
                    return PersonalState.from_dict(safe_load(p))
                except (DataFormatError, KeyError):
                    continue
        return None

    def load_latest(self) -> PersonalState | None:
        return self.load_before(10**9)
