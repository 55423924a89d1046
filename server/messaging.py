"""Send messages to nodes and collect the replies as they arrive (fast polling, streaming).

Flower's ``Grid.send_and_receive`` (1.41) pushes the messages, pulls what is ready and sleeps
between pulls - 0.1 s in the simulation's in-memory grid, but a fixed *3 s* in the HTTP grid a
ServerApp uses in a deployment (``flwr-serverapp``), where every round and evaluation thus waits
on average 1.5 s after its last reply - and returns only when every reply is in, so the driver
holds all C replies (C copies of the model) at once.

``stream_replies`` pushes the messages and then pulls with a short, growing interval
(``POLL_MIN_S`` doubling up to ``POLL_MAX_S`` = 0.1 s while nothing arrives, back to the minimum
when something does), yielding each reply as soon as it is pulled, so a consumer can fold it into a
running mean and drop it. ``send_and_receive`` is the list-returning equivalent. The timeout
means what Flower's means: stop waiting ``timeout`` seconds after the push (None: wait for all).
``in_push_order`` re-orders a stream into the order the messages were pushed (a reply that
arrives early waits for its predecessors): with clients in parallel (several Ray actors) the
running mean then folds the replies in the same order as a sequential run, so the final model is
the sequential run's bit for bit. ``FEDFR_REPLY_ORDER=arrival`` folds in arrival order instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from flwr.app import Message
from flwr.serverapp import Grid

#: wall-clock time (``time.time()``) of the first reply this process received (start-up phases)
first_reply_at: float | None = None
POLL_MIN_S = 0.02
POLL_MAX_S = 0.1  # Flower's in-memory grid (simulation) polls every 0.1 s, its HTTP grid 3 s


def stream_replies(grid: Grid, messages: Iterable[Message],
                   timeout: float | None = None) -> Iterator[Message]:
    """Push ``messages``; yield their replies in arrival order until all came or time is up.

    ``FEDFR_FLOWER_POLLING=1`` uses Flower's own ``grid.send_and_receive`` instead (the
    benchmarks' "before" runs).
    """
    global first_reply_at
    if os.environ.get("FEDFR_FLOWER_POLLING") == "1":
        for reply in grid.send_and_receive(messages, timeout=timeout):
            first_reply_at = first_reply_at or time.time()
            yield reply
        return
    pending = set(grid.push_messages(messages))
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = POLL_MIN_S
    while pending:
        got = list(grid.pull_messages(list(pending)))
        if got and first_reply_at is None:
            first_reply_at = time.time()
        for reply in got:
            pending.discard(reply.metadata.reply_to_message_id)
            yield reply
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            return
        if got:
            interval = POLL_MIN_S
        else:
            interval = min(interval * 2, POLL_MAX_S)
        if deadline is not None:
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        else:
            time.sleep(interval)


def in_push_order(sent: Iterable[Message], replies: Iterable[Message]) -> Iterator[Message]:
    """Yield ``replies`` in the order of the messages in ``sent`` they answer (looked up by
    message id, known once pushed): an early reply is held until every earlier message's reply
    came; what is held when the stream ends (a reply that never came) follows in push order.
    Replies to none of ``sent`` pass through at once."""
    if os.environ.get("FEDFR_REPLY_ORDER") == "arrival":
        yield from replies
        return
    sent = list(sent)
    position: dict[str, int] = {}
    held: dict[int, Message] = {}
    nxt = 0
    for reply in replies:
        mid = reply.metadata.reply_to_message_id
        if mid not in position:  # ids are set when the messages are pushed: look them up late
            position = {m.metadata.__dict__["_message_id"]: i for i, m in enumerate(sent)
                        if m.metadata.__dict__.get("_message_id")}
        i = position.get(mid)
        if i is None:
            yield reply
            continue
        held[i] = reply
        while nxt in held:
            yield held.pop(nxt)
            nxt += 1
    for i in sorted(held):
        yield held.pop(i)


def send_and_receive(grid: Grid, messages: Iterable[Message],
                     timeout: float | None = None) -> list[Message]:
    """All replies of ``messages`` (those that came within ``timeout``), in arrival order."""
    return list(stream_replies(grid, messages, timeout))


class CountingStream:
    """Replies (a stream, consumed once, or a list) with ``count``: how many went through, and
    ``senders``: their source node ids."""

    def __init__(self, replies: Iterable[Message]) -> None:
        self._list = replies if isinstance(replies, list) else None
        self._it = None if self._list is not None else iter(replies)
        self.count = len(self._list) if self._list is not None else 0
        self.senders: set[int] = ({r.metadata.src_node_id for r in self._list}
                                  if self._list is not None else set())

    def __iter__(self) -> Iterator[Message]:
        if self._list is not None:
            yield from self._list
            return
        assert self._it is not None
        for reply in self._it:
            self.count += 1
            self.senders.add(reply.metadata.src_node_id)
            yield reply
