"""The FedFR ServerApp (``server.app:app``), its round loop and an in-process runner."""
