"""Exceptions raised by fedfr for bad input (data files, manifests, configs)."""

from __future__ import annotations


class FedFRError(Exception):
    """Base class of fedfr's own errors."""


class DataFormatError(FedFRError, ValueError):
    """A data file or record is missing, corrupt or not in the expected format.

    The message always names the file (and record/offset where known) and what was expected.
    """


class ConfigError(FedFRError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""
