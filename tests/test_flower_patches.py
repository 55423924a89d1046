"""The patched LinkState lookup hands every node exactly the messages Flower's own would."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

from server import flower_patches

ORIGINAL = flower_patches.ORIGINAL_GET_MESSAGE_INS


class FakeState:
    """The parts of InMemoryLinkState that get_message_ins touches; expires ids in ``expired``."""

    def __init__(self, messages: list[tuple[str, int, int, str]], expired: set[str]) -> None:
        self.lock = threading.RLock()
        self.message_ins_store = {
            mid: SimpleNamespace(metadata=SimpleNamespace(
                dst_node_id=node, run_id=run, delivered_at=delivered, ttl=10.0,
                created_at=0.0 if mid in expired else now().timestamp() + 1e6))
            for mid, node, run, delivered in messages}
        self.checks = 0

    def _check_stored_messages(self, ids: set[str]) -> None:
        """Flower's: delete the given messages that are past their TTL."""
        self.checks += 1
        current = now().timestamp()
        for mid in list(ids):
            msg = self.message_ins_store.get(mid)
            if msg and msg.metadata.created_at + msg.metadata.ttl <= current:
                del self.message_ins_store[mid]


def _messages(seed: int) -> tuple[list, set[str]]:
    rng = random.Random(seed)
    msgs = [(f"m{i}", rng.randrange(6), rng.choice([1, 1, 2]), rng.choice(["", "", "", "t"]))
            for i in range(60)]
    return msgs, {f"m{i}" for i in rng.sample(range(60), 8)}


def test_same_messages_delivered_as_flowers_lookup() -> None:
    for seed in range(5):
        msgs, expired = _messages(seed)
        a, b = FakeState(msgs, expired), FakeState(msgs, expired)
        for _ in range(3):  # repeated polls, as the engine's thread does
            for node in range(6):
                for limit, run_id in ((1, None), (None, 1), (2, 2)):
                    got_a = ORIGINAL(a, node, limit, run_id=run_id)
                    got_b = flower_patches.fast_get_message_ins(b, node, limit, run_id=run_id)
                    ids_a = [k for k, v in a.message_ins_store.items() if v in got_a]
                    ids_b = [k for k, v in b.message_ins_store.items() if v in got_b]
                    assert ids_a == ids_b
        assert set(a.message_ins_store) == set(b.message_ins_store)  # expired ones gone in both
        delivered = {k: v.metadata.delivered_at != "" for k, v in a.message_ins_store.items()}
        assert delivered == {k: v.metadata.delivered_at != ""
                             for k, v in b.message_ins_store.items()}
        assert b.checks < a.checks  # the point: far fewer checks


def test_installed_flower_has_the_method_the_fix_was_written_for() -> None:
    """The locked Flower must carry the exact method replaced; on a newer Flower this fails on
    purpose (``make test-latest``), since there the fix stays off and the speed-up is lost."""
    assert flower_patches._source_digest(ORIGINAL) == flower_patches._EXPECTED["get_message_ins"]


def test_apply_on_the_known_method_whatever_the_version(monkeypatch) -> None:
    import flwr

    monkeypatch.setattr(InMemoryLinkState, "get_message_ins", ORIGINAL)  # undone at teardown
    monkeypatch.setattr(flower_patches, "_applied", False)
    monkeypatch.setattr(flwr, "__version__", "9.99.0")  # the version string plays no part
    monkeypatch.setenv("FEDFR_PATCH_FLOWER", "0")
    assert flower_patches.apply() is False
    assert InMemoryLinkState.__dict__["get_message_ins"] is ORIGINAL
    monkeypatch.delenv("FEDFR_PATCH_FLOWER")
    assert flower_patches.apply() is True
    assert InMemoryLinkState.get_message_ins is flower_patches.fast_get_message_ins


def test_changed_method_stays_unpatched_with_one_log_line(monkeypatch, caplog) -> None:
    def get_message_ins(self, node_id, limit, *, run_id=None):  # a "new Flower" method
        return ORIGINAL(self, node_id, limit, run_id=run_id)

    monkeypatch.setattr(InMemoryLinkState, "get_message_ins", get_message_ins)
    monkeypatch.setattr(flower_patches, "_applied", False)
    monkeypatch.delenv("FEDFR_PATCH_FLOWER", raising=False)
    with caplog.at_level("WARNING", logger=flower_patches.__name__):
        assert flower_patches.apply() is False
    assert InMemoryLinkState.__dict__["get_message_ins"] is get_message_ins
    lines = [r for r in caplog.records if r.name == flower_patches.__name__]
    assert len(lines) == 1 and "unpatched" in lines[0].getMessage()
