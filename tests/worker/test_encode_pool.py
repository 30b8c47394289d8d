"""The encode processes (worker/encode_pool.py): the bytes a process makes are the bytes
the store step makes inline, the thumbnail comes from the same pixels, a dead encoder
process costs no image, and the defaults follow the device. The worker's use of them runs
on real services in tests/reliability/test_worker_faults.py (the pipelined-stores
variants run with two encode processes) and tests/worker/test_engine_policies.py."""
from __future__ import annotations

import io
import multiprocessing
import os
import signal

import numpy as np
import pytest
from PIL import Image

from fresco.thumbnails import MAX_SIDE, make_thumbnail
from support.waiting import wait_until
from worker.encode_pool import CUDA_DEFAULT_MAX, EncodePool, encode_processes_for, encode_with_thumbnail
from worker.encoding import encode


def picture(h: int = 320, w: int = 480) -> np.ndarray:
    """A render-like image: smooth gradients and a little noise (seeded)."""
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(7).integers(0, 24, (h, w))
    return np.stack([x * 255 // w, y * 255 // h, (x + y + noise) % 256], axis=-1).astype(np.uint8)


@pytest.fixture
def pool():
    p = EncodePool(2)
    yield p
    p.close()


def children() -> set[int]:
    return {c.pid for c in multiprocessing.active_children()}


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_a_process_makes_the_same_bytes_as_the_store_step(pool, fmt):
    pixels = picture()
    before = children()
    encoded = pool.submit(pixels, fmt)()
    assert children() - before, "no encode process ran"
    data, content_type = encode(pixels, fmt)
    assert (encoded.data, encoded.content_type) == (data, content_type)
    assert encoded.thumbnail == encode_with_thumbnail(pixels, fmt).thumbnail
    assert encoded.encode_s > 0
    if fmt == "png":  # lossless: the stored image is the rendered pixels
        with Image.open(io.BytesIO(encoded.data)) as im:
            assert np.array_equal(np.asarray(im), pixels)


def test_the_thumbnail_is_made_from_the_pixels_as_the_gallery_would(pool):
    pixels = picture(600, 900)
    encoded = pool.submit(pixels, "png")()
    with Image.open(io.BytesIO(encoded.thumbnail)) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (MAX_SIDE, 171)
    # the gallery's own thumbnail of the stored PNG (api/ui/thumbs.py) is the same image
    assert encoded.thumbnail == make_thumbnail(encoded.data)


def test_many_images_come_back_in_order(pool):
    images = [picture() ^ np.uint8(i) for i in range(12)]
    handles = [pool.submit(p, "png") for p in images]
    for pixels, handle in zip(images, handles):
        assert handle().data == encode(pixels, "png")[0]


def test_no_processes_encodes_inline():
    pool = EncodePool(0)
    before = children()
    pool.start()
    assert pool.submit(picture(), "webp")().data == encode(picture(), "webp")[0]
    assert children() == before
    pool.close()


def test_a_killed_encode_process_costs_no_image(pool):
    """An encoder SIGKILLed (the kernel's OOM killer) breaks the whole executor; the image
    in hand is encoded inline, and the next ones go to a fresh pool."""
    pixels = picture()
    pool.submit(pixels, "png")()  # the pool works
    victims = children()
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not (children() & victims), 10, "the encode processes to be gone")
    assert pool.submit(pixels, "png")().data == encode(pixels, "png")[0]  # broken: inline
    after = children()
    assert pool.submit(pixels, "png")().data == encode(pixels, "png")[0]
    assert children() - after - victims, "no fresh encode process"
    assert pool.processes == 2


def test_a_bad_format_is_an_error_not_a_silent_image(pool):
    with pytest.raises(ValueError, match="output_format"):
        pool.submit(picture(), "gif")()


def test_defaults_follow_the_device(monkeypatch):
    assert encode_processes_for(None, "cpu") == 0  # the cores are sampling
    assert 1 <= encode_processes_for(None, "cuda") <= CUDA_DEFAULT_MAX
    monkeypatch.setattr("worker.encode_pool.cpu_count", lambda: 64)
    assert encode_processes_for(None, "cuda") == CUDA_DEFAULT_MAX
    monkeypatch.setattr("worker.encode_pool.cpu_count", lambda: 1)
    assert encode_processes_for(None, "cuda") == 1
    assert encode_processes_for(3, "cpu") == 3 and encode_processes_for(0, "cuda") == 0


def test_a_daemonic_render_process_still_gets_its_encoders(monkeypatch):
    """Celery's render processes are daemonic to multiprocessing, which refuses such a
    process children: the pool starts them anyway, and the process stays as it was. (A
    real Celery render process, billiard's, is tests/reliability/test_worker_faults.py's.)"""
    current = multiprocessing.current_process()
    monkeypatch.setitem(current._config, "daemon", True)
    pool = EncodePool(1)
    try:
        before = children()
        assert pool.submit(picture(), "png")().data == encode(picture(), "png")[0]
        assert children() - before and pool.processes == 1
        assert multiprocessing.current_process() is current and current.daemon
    finally:
        pool.close()


ORPHAN_CHECK = """
import multiprocessing, sys, time
import numpy as np
from worker.encode_pool import EncodePool
if __name__ == "__main__":
    pool = EncodePool(2)
    pool.submit(np.zeros((8, 8, 3), np.uint8), "png")()
    print(" ".join(str(c.pid) for c in multiprocessing.active_children()), flush=True)
    time.sleep(120)
"""


def test_encode_processes_end_with_a_killed_render_process(tmp_path):
    """A render process SIGKILLed (an OOM kill, a lost node's pod) runs no cleanup; its
    encode processes notice and exit instead of waiting forever as orphans."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "render_process.py"
    script.write_text(ORPHAN_CHECK)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    finally:
        proc.kill()
        proc.wait(10)
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 10, "the encode processes to exit")


def test_a_shutdown_signal_to_the_process_group_leaves_the_encoders_working(pool):
    """SIGTERM to the worker's process group (systemd, a terminal's ^C is SIGINT) is the
    render process's to handle: it drains and stores what it rendered, with its encoders."""
    pool.submit(picture(), "png")()
    encoders = children()

    def ignoring(pid: int) -> bool:  # its initializer ran: SIGTERM is in its ignored set
        status = open(f"/proc/{pid}/status").read()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
        return bool(mask & (1 << (signal.SIGTERM - 1)))
    wait_until(lambda: all(ignoring(p) for p in encoders), 30, "the encoders to have started")
    for pid in encoders:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
    assert pool.submit(picture(), "png")().data == encode(picture(), "png")[0]
    assert children() == encoders  # the same processes did it
