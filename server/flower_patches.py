"""A fix for a quadratic cost in Flower's simulation engine, applied when our apps load.

The simulation engine hands messages to its Ray actors from a thread that, every 0.1 s, asks the
in-memory LinkState for the next message of *each* of the N simulated nodes
(``vce_api.add_messages_to_queue``). ``InMemoryLinkState.get_message_ins(node_id, limit=1)``
answers by running the expiry/federation check ``_check_stored_messages`` on *every* stored
message (all M messages of the round, delivered ones included) before looking at its destination.
That is N x M checks every 0.1 s for the whole round: with 40 clients 16 000 checks a second, with
100 clients 100 000, on the same 2 cores the clients train on.

``fast_get_message_ins`` returns the same messages: it first selects, by plain attribute
comparisons, the stored messages addressed to ``node_id`` that are undelivered (and of
``run_id``), then runs Flower's ``_check_stored_messages`` on those candidates only, in store
order, and marks what it returns as delivered - exactly what the original does for that node.
Messages past their TTL, whoever they are for, are found by the same cheap pass and handed to
``_check_stored_messages``, which deletes them, as the original's full scan does. (The one
difference: the original stops checking at the ``limit``-th match, so it may delete an expired
message one poll later.)

``apply()`` installs it when the method it replaces has the source this was written against
(sha256 of ``inspect.getsource``), whatever Flower's version string says; when the source differs
it logs one warning line and stays off, so a Flower that changed the method runs unpatched, never
with a replacement written for other code. Checked: Flower 1.41.0 and 1.42.0 ship the same method
(digest ``6547c8dcbc62e12f``), so the fix applies on both. ``server.app``
calls it when Flower loads the ServerApp in the simulation process (a class attribute: every
later lookup of the engine's thread uses it). ``FEDFR_PATCH_FLOWER=0`` disables it (the
benchmarks' "before" runs).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os

log = logging.getLogger(__name__)

#: sha256 (first 16 hex) of the source of the method replaced (Flower 1.41.0 and 1.42.0)
_EXPECTED = {"get_message_ins": "6547c8dcbc62e12f"}
_applied = False
try:  # the method as Flower ships it (kept for tests and to undo)
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState as _State

    ORIGINAL_GET_MESSAGE_INS = _State.__dict__["get_message_ins"]
except (ImportError, KeyError):  # pragma: no cover - another Flower layout
    ORIGINAL_GET_MESSAGE_INS = None


def _source_digest(fn) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def fast_get_message_ins(self, node_id: int, limit: int | None, *,
                         run_id: int | None = None) -> list:
    """``InMemoryLinkState.get_message_ins`` checking only the node's own messages."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    from flwr.supercore.date import now

    out: list = []
    with self.lock:
        current = now().timestamp()
        candidates, expired = [], set()
        for msg_id, msg in list(self.message_ins_store.items()):
            meta = msg.metadata
            if meta.created_at + meta.ttl <= current:
                expired.add(msg_id)  # removed below, as Flower's full scan removes them
            elif meta.dst_node_id == node_id and meta.delivered_at == "" \
                    and (run_id is None or meta.run_id == run_id):
                candidates.append(msg_id)
        if expired:
            self._check_stored_messages(expired)
        for msg_id in candidates:
            self._check_stored_messages({msg_id})
            msg = self.message_ins_store.get(msg_id)
            if (msg and msg.metadata.dst_node_id == node_id
                    and (run_id is None or msg.metadata.run_id == run_id)
                    and msg.metadata.delivered_at == ""):
                out.append(msg)
            if limit and len(out) == limit:
                break
    delivered_at = now().isoformat()
    for msg in out:
        msg.metadata.delivered_at = delivered_at
    return out


def apply() -> bool:
    """Install ``fast_get_message_ins`` if safe (see the module doc); True if installed."""
    global _applied
    if _applied:
        return True
    if os.environ.get("FEDFR_PATCH_FLOWER", "1") == "0":
        return False
    try:
        from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    except ImportError:
        return False
    original = InMemoryLinkState.get_message_ins
    try:
        digest = _source_digest(original)
    except (OSError, TypeError):
        digest = "unreadable"
    if digest != _EXPECTED["get_message_ins"]:
        log.warning("server/flower_patches: InMemoryLinkState.get_message_ins has source %s, not "
                    "the %s it was written against: Flower's own method is kept (unpatched)",
                    digest, _EXPECTED["get_message_ins"])
        return False
    InMemoryLinkState.get_message_ins = fast_get_message_ins
    _applied = True
    return True
