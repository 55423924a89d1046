"""The paper's FedAvg baseline (dissertation Ch. 7, Table 7.1 row "FedAvg").

Each client trains its backbone with a local CosFace head over its own K_l identities only; the
class matrices stay on the clients and no public data or public class matrix is involved. The
server averages the backbone alone, weighted by the clients' private image counts N_l (eq. 7.2).

Validation, weighting and failure handling are FedFR's (``strategies.fedfr.FedFR``); this class
only fixes the payload: ``backbone.*`` keys and never ``phi``.
"""

from __future__ import annotations

from typing import ClassVar

from strategies.fedfr import PHI_KEY, ArraySpec, FedFR


class FedAvgBaseline(FedFR):
    """FedAvg over the backbone only; refuses to send or expect the public matrix ``phi``."""

    sends_phi: ClassVar[bool] = False

    def _check_sent_layout(self, spec: ArraySpec) -> None:
        """Raise ValueError if ``phi`` is among the arrays to send, then FedFR's other checks."""
        if PHI_KEY in spec:
            raise ValueError(
                f"the FedAvg baseline averages the backbone only: remove '{PHI_KEY}' (the public "
                "class matrix is FedFR's) from the arrays sent to clients"
            )
        super()._check_sent_layout(spec)
