"""The store queue's rules (worker/store_queue.py): pipelined by device unless set; at
most one batch of stores in flight; serial runs inline. The engine's use of it runs on
real services in tests/reliability/test_worker_faults.py (pipelined-stores variants)."""
from __future__ import annotations

import threading

from worker.store_queue import StoreQueue, pipelining_for


def test_auto_pipelines_on_cuda_only():
    assert pipelining_for("auto", "cuda") and not pipelining_for("auto", "cpu")
    assert pipelining_for("on", "cpu") and not pipelining_for("off", "cuda")


def test_serial_runs_inline():
    q, ran = StoreQueue(False), []
    q.submit(lambda: ran.append(threading.current_thread()))
    assert ran == [threading.current_thread()] and not q.busy and q.wait(0)


def test_at_most_one_batch_in_flight():
    q = StoreQueue(True)
    release, order = threading.Event(), []

    def first() -> None:
        release.wait(10)
        order.append("first")
    q.submit(first)
    assert q.busy and not q.wait(0.05)  # the first batch is still storing
    submitter = threading.Thread(target=lambda: q.submit(lambda: order.append("second")))
    submitter.start()
    submitter.join(0.2)
    assert submitter.is_alive() and order == []  # the second waits for the first
    release.set()
    submitter.join(10)
    assert q.wait(10) and order == ["first", "second"] and not q.busy


def test_a_failing_batch_does_not_stop_the_next():
    q = StoreQueue(True)
    q.submit(lambda: 1 / 0)
    done = []
    q.submit(lambda: done.append(1))
    assert q.wait(10) and done == [1]
