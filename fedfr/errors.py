"""Exceptions raised by fedfr for bad input (data files, manifests, configs), and the one place
that turns them into a one-line message and an exit status for every entry point
(``fedfr ...``, ``python -m server.inprocess`` / ``server.simulate`` / ``server.launch``).

Exit statuses: 0 success; 1 a run that finished without the result asked for
(``RunFailedError``); 2 a user error (config, data, files: ``FedFRError`` or an ``OSError``
naming a file). With ``--debug`` (or ``FEDFR_DEBUG=1``) the traceback is printed too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2


class FedFRError(Exception):
    """Base class of fedfr's own errors (user errors: exit status 2)."""

    exit_code = EXIT_USER_ERROR


class DataFormatError(FedFRError, ValueError):
    """A data file or record is missing, corrupt or not in the expected format.

    The message always names the file (and record/offset where known) and what was expected.
    """


class ConfigError(FedFRError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""


class RunFailedError(FedFRError):
    """A run finished, but its final model did not come from every round asked for or its
    final evaluation failed on some client (exit status 1; ``allow-partial=true`` accepts it)."""

    exit_code = EXIT_RUN_FAILED


def debug_requested(flag: bool = False) -> bool:
    """``flag`` or ``FEDFR_DEBUG`` set to 1/true/yes."""
    return flag or os.environ.get("FEDFR_DEBUG", "").strip().lower() in ("1", "true", "yes")


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None when ``exc`` is not one (a bug: keep the
    traceback). OSErrors count when they name a file (missing, unreadable, a folder...)."""
    if isinstance(exc, FedFRError):
        text = str(exc).strip()
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    else:
        return None
    lines = text.splitlines() or [type(exc).__name__]
    return lines[0] + (" (more with --debug)" if len(lines) > 1 else "")


def first_detail(exc: BaseException, limit: int = 240) -> str:
    """The first informative line of ``exc``'s message, at most ``limit`` characters: for
    torch's ``load_state_dict`` errors the first mismatch (``size mismatch for fc.weight: ...``,
    ``Missing key(s) in state_dict: ...``) rather than its header line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_entry_point(main: Callable[[], int | None], prog: str, debug: bool = False) -> int:
    """Call ``main()``; a user error becomes ``<prog>: error: <one line>`` on stderr and its
    exit status (traceback first under --debug). Other exceptions propagate unchanged."""
    try:
        return int(main() or 0)
    except (FedFRError, OSError) as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        if debug_requested(debug):
            traceback.print_exc()
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
