"""Idle instances go to requests in the order they asked, never to a newcomer first."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from infra.local.fair_queue import FairQueue


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_released_items_go_to_the_longest_waiting_request():
    # given three requests waiting, in order, for an instance
    q: FairQueue[str] = FairQueue()
    got: list[tuple[int, str]] = []
    threads = []
    for i in range(3):
        t = threading.Thread(target=lambda i=i: got.append((i, q.get(timeout=5))))
        t.start()
        threads.append(t)
        _wait_for(lambda n=i + 1: len(q._waiters) == n)
    # when instances come back one by one, and a newcomer asks in between
    q.put("a")
    q.put("b")
    newcomer = threading.Thread(target=lambda: got.append((99, q.get(timeout=5))))
    newcomer.start()
    q.put("c")
    q.put("d")
    for t in [*threads, newcomer]:
        t.join(5)
    # then the waiters were served first come first served, the newcomer last
    assert sorted(got)[:3] == [(0, "a"), (1, "b"), (2, "c")]
    assert (99, "d") in got and q.qsize() == 0


def test_an_idle_item_is_taken_at_once_and_an_empty_queue_times_out():
    q: FairQueue[int] = FairQueue()
    q.put(1)
    assert q.qsize() == 1 and q.get(timeout=0) == 1
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    assert not q._waiters  # a timed-out request leaves no ghost to hand the next item to
    q.put(2)
    assert q.get(timeout=0) == 2
