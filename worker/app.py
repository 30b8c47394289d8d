"""The Celery app: configuration and routing only.

Delivery settings follow docs/design.md: late acks, reject on worker lost, prefetch 1, one
render process, results ignored (state lives in Postgres), a broker visibility timeout
far beyond the lease. Models load in the render child after fork (signals.py).
"""
from __future__ import annotations

from celery import Celery
from kombu import Queue

from fresco.constants import DEFAULT_QUEUE, RENDER_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK
from fresco.dispatch import broker_options
from fresco.registry import get_registry
from fresco.settings import get_settings
from worker.flower_args import accept_spaced_flower_options
from worker.metrics_server import export_dir
from worker.probes import LiveFile

# How long a new render process may take to start (imports, model preload) before
# Celery kills it as hung and forks another.
PROC_ALIVE_TIMEOUT_S = 600.0

settings = get_settings()
# Before anything imports prometheus_client: every process of this worker, the render
# processes forked later included, writes its metrics where the main process serves them.
export_dir(settings)
accept_spaced_flower_options()  # docs/design.md's `flower --port 5555` (Flower alone wants --port=5555)
queues = settings.queues or get_registry().queues() or [DEFAULT_QUEUE]

app = Celery("fresco", broker=settings.broker_url, include=["worker.tasks", "worker.signals"])
app.conf.update(
    broker_transport_options=broker_options(settings),
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # keep reconnecting through a Redis restart
    # ... every 0.5-2 s, not on kombu's 2-30 s backoff (worker/consumer.py)
    worker_consumer="worker.consumer:FastReconnectConsumer",
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A failing task is acknowledged: its jobs already carry their outcome in Postgres
    # (failed, or queued again with a fresh message), so redelivery would only loop.
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    # One render process per GPU; on a CPU, FRESCO_RENDER_PROCESSES, or 1 grown to what
    # the preload tuning measured best (worker/autotune.py, signals.py).
    worker_concurrency=settings.render_processes or 1,
    worker_pool="prefork",
    # The render child is long-lived: it holds the warm model cache.
    worker_max_tasks_per_child=None,
    # A render child replaced after a crash (an OOM kill, a poison prompt) imports torch
    # and preloads its models in worker_process_init before it reports UP. Celery's
    # default 4 s kills every replacement before it is up, forever; a model load from
    # object storage on a cold node takes minutes.
    worker_proc_alive_timeout=PROC_ALIVE_TIMEOUT_S,
    # A Redis restart must not kill a running render: its outcome is recorded in
    # Postgres under a fenced lease, and a redelivered message claims nothing.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # Shutdown: SIGTERM is Celery's warm shutdown, which waits for the running task
    # without a limit; the render child enforces FRESCO_SHUTDOWN_GRACE_S itself (finish
    # within it, else hand the jobs back at once: signals.py). The soft shutdown below
    # only bounds a cold shutdown (SIGQUIT) before Celery cancels the task, and an idle
    # worker has nothing to wait for.
    worker_soft_shutdown_timeout=settings.shutdown_grace_s,
    worker_enable_soft_shutdown_on_idle=False,
    worker_send_task_events=True,
    # Queued work shows in Flower. The farm publishes through fresco.dispatch, which
    # sends these events itself in the same round trip as the messages.
    task_send_sent_event=True,
    task_queues=[Queue(q, routing_key=q) for q in queues],
    task_default_queue=queues[0],
    # Webhooks have a queue of their own, not in task_queues: a render worker never
    # consumes it; `celery -A worker.app worker -Q fresco.webhooks -P threads` does.
    task_routes={RENDER_TASK: {"queue": queues[0]}, WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
    worker_hijack_root_logger=False,
)
# FRESCO_LIVE_FILE, touched from the consumer's event loop (worker/probes.py).
app.steps["consumer"].add(LiveFile)
