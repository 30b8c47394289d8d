"""Lease tokens: who holds a claimed job.

A token is ``host:worker:pid:random``. ``worker`` is a nonce minted once when the Celery
main process imports this module; the render processes it forks inherit it. So a token
that carries this process's host and nonce was minted by one of its own children, in its
own pid namespace, and the main process can tell at once, with ``kill(pid, 0)``, whether
that child is gone: its jobs go back to the queue in about a second instead of after a
whole lease (see worker/reaper.py). Tokens of other workers are never judged here; their
leases expire as before.
"""
from __future__ import annotations

import os
import socket
import uuid

HOST = socket.gethostname()
WORKER_NONCE = uuid.uuid4().hex[:8]


def new_token() -> str:
    """A fresh lease token for one claimed unit of this process."""
    return f"{HOST}:{WORKER_NONCE}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def worker_prefix() -> str:
    """What every token minted by this worker's processes starts with."""
    return f"{HOST}:{WORKER_NONCE}:"


def token_process(token: str) -> str:
    """``host:worker:pid``: the render process a token belongs to."""
    return token.rsplit(":", 1)[0]


def token_pid(token: str) -> int | None:
    try:
        return int(token.rsplit(":", 2)[1])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """False only when no process has this pid (a dead child not yet reaped still counts
    as alive, which errs on the side of waiting for the lease)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True
