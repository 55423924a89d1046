"""The person re-identification domain: data sources, models and evaluation protocols.

Pieces of the re-ID *domain* live here (``data/``, ``models/``, ``evaluation/``); the *methods*
that act on any domain (losses, hard negatives, DFC, aggregation) live at the top of ``fedfr/``,
and the federation plumbing in ``clients/``, ``server/`` and ``strategies/``.
"""
