"""The FedFR ClientApp (``clients.app:app``)."""
