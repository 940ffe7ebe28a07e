"""Tests for seg_perception.core.workers: one worker per name and process, fresh after fork."""
from __future__ import annotations

import multiprocessing
import threading

from seg_perception.core.workers import process_worker


def test_one_worker_per_name_on_its_own_named_thread():
    a, b = process_worker("test_a"), process_worker("test_b")
    assert process_worker("test_a") is a and a is not b
    assert a.submit(lambda: threading.current_thread().name).result().startswith("seg_test_a")


def _child(q):
    q.put(process_worker("test_a").submit(lambda: 42).result(timeout=10))


def test_a_forked_child_gets_a_worker_that_runs():
    process_worker("test_a").submit(lambda: None).result()  # the parent's thread exists
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(30)
    assert p.exitcode == 0 and q.get(timeout=5) == 42
