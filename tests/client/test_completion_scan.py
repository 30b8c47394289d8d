"""as_completed's scan (fresco/client/calls.py, CompletionScan) in-process, over a fake
batch of jobs served page by page: each finished job is reported once with its index, a
look reads from the first unfinished page and stops at a page of queued jobs, and the last
look (the batch has ended) reads to the end."""
from __future__ import annotations

from datetime import UTC, datetime

from fresco.client.calls import SCAN_PAGE, CompletionScan, Scan
from fresco.client.resources import Job, Page

N = SCAN_PAGE * 10


class FakeBatch:
    def __init__(self, n: int) -> None:
        self.status = ["queued"] * n
        self.pages_read = 0

    def page(self, cursor: str | None) -> Page[Job]:
        self.pages_read += 1
        start = int(cursor or 0)
        end = min(start + SCAN_PAGE, len(self.status))
        jobs = [Job(id=f"job-{i}", status=self.status[i], spec={}, created_at=datetime.now(UTC))
                for i in range(start, end)]
        return Page[Job](data=jobs, next_cursor=str(end) if end < len(self.status) else None)

    def look(self, scan: CompletionScan, final: bool = False) -> list[int]:
        self.pages_read = 0
        gen: Scan = scan.scan(final)
        try:
            call = next(gen)
            while True:
                call = gen.send(self.page(call.params.get("cursor")))
        except StopIteration as done:
            return [index for index, _ in done.value]


def test_each_finished_job_is_reported_once_reading_a_page_or_two_per_look():
    batch, scan = FakeBatch(N), CompletionScan("b")
    assert batch.look(scan) == [] and batch.pages_read == 1  # all queued: the first page only
    for i in range(3 * SCAN_PAGE + 5):  # the first three pages and a bit finish, out of order
        batch.status[i] = "succeeded"
    batch.status[7] = "running"
    assert batch.look(scan) == [i for i in range(3 * SCAN_PAGE + 5) if i != 7]
    assert batch.pages_read == 5  # up to the first page of queued jobs
    batch.status[7] = "failed"
    assert batch.look(scan) == [7]  # the straggler, and nothing reported twice
    batch.status[3 * SCAN_PAGE + 5] = "running"
    assert batch.look(scan) == [] and batch.pages_read == 2  # from the frontier: the first pages are done with
    assert scan.frontier_index == 3 * SCAN_PAGE


def test_the_last_look_reads_to_the_end():
    batch, scan = FakeBatch(N), CompletionScan("b")
    batch.status[N - 1] = "canceled"  # far beyond a page of queued jobs
    assert batch.look(scan) == []
    batch.status = ["canceled"] * (N - 1) + ["canceled"]
    assert batch.look(scan, final=True) == list(range(N))
    assert batch.pages_read == 10
