"""Publishing work units to the broker (the API after commit, the sweeper, the worker
on requeue). A message names a unit of work, not a payload: "up to B queued jobs of this
signature"; the specs stay in Postgres and the worker claims them itself. A message that
finds nothing to claim (a duplicate, a late one) is dropped, so publishing too much is
harmless and publishing too little is repaired by the sweeper.

Speed: a 10,000-job batch is ~10,000/B messages. Celery's ``send_task`` costs ~1 ms a
message (a Redis client per publish, one round trip each), so Celery and kombu build one
message per signature here and its copies, each with its own task id, go to Redis in one
pipelined round trip. The envelope is kombu's own (``prepare_message``), so a stock
``celery worker`` consumes it like any other message. Each message's ``task-sent`` event
goes in the same round trip, so Flower shows queued work (PENDING) before a worker takes it.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import math
import os
import uuid

import redis
from celery import Celery
from celery.events import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu.serialization import dumps

from fresco.constants import RENDER_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK
from fresco.demand import Demand
from fresco.registry import Registry, get_registry
from fresco.settings import Settings, get_settings
from fresco.spec import Signature

log = logging.getLogger(__name__)


def broker_options(settings: Settings) -> dict:
    """Redis transport options shared by the senders and the worker. The visibility
    timeout is only a backstop: leases in Postgres are the recovery path."""
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
        "health_check_interval": 10,
        "retry_on_timeout": True,
    }


@functools.lru_cache(maxsize=1)
def sender() -> Celery:
    """A Celery app used only to build messages (the API imports no worker code)."""
    settings = get_settings()
    app = Celery("fresco-sender", broker=settings.broker_url, set_as_current=False)
    app.conf.update(broker_transport_options=broker_options(settings), task_serializer="json",
                    accept_content=["json"],
                    # queued work shows in Flower before a worker takes it (_sent_event)
                    task_send_sent_event=True)
    return app


@functools.lru_cache(maxsize=1)
def broker() -> redis.Redis:
    settings = get_settings()
    opts = broker_options(settings)
    return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=opts["socket_connect_timeout"],
                                socket_timeout=opts["socket_timeout"], health_check_interval=opts["health_check_interval"])


def batch_size(registry: Registry, model: str) -> int:
    """B for publishing: the model's smallest batch size, so a CPU worker is never
    starved of messages (a GPU worker claims more per message; the surplus messages
    find nothing and are dropped)."""
    entry = registry.get(model)
    return max(1, min(entry.batch_size("cpu"), entry.batch_size("cuda"))) if entry else 1


def time_limits(sig: str, batch: int, settings: Settings) -> tuple[float, float]:
    """(soft, hard) seconds for a unit: a base plus a term in steps x pixels x batch, so
    a hung render cannot hold a worker forever and a big one is not cut short."""
    s = Signature.parse(sig)
    soft = (settings.deadline_base_s
            + settings.deadline_per_megapixel_step_s * s.width * s.height / 1e6 * s.steps * batch)
    return soft, soft * 1.5 + 30


def _kombu_message(body: object, headers: dict, properties: dict, exchange: str, routing_key: str,
                   *, base64_body: bool = True) -> dict:
    """A message as kombu's Redis transport writes it (``Channel.prepare_message`` and
    ``_inplace_augment_message``: body_encoding base64, priority 0). ``base64_body=False``
    leaves the JSON body as it is (kombu's ``decode_body`` without an encoding), so a
    placeholder in it can be substituted per copy."""
    content_type, encoding, payload = dumps(body, serializer="json")
    if base64_body:
        raw = payload.encode("utf-8") if isinstance(payload, str) else payload
        payload, properties = base64.b64encode(raw).decode("ascii"), dict(properties, body_encoding="base64")
    properties = dict(properties, delivery_mode=2, priority=0, delivery_tag=str(uuid.uuid4()),
                      delivery_info={"exchange": exchange, "routing_key": routing_key})
    return {"body": payload, "content-encoding": encoding, "content-type": content_type, "headers": headers,
            "properties": properties}


def _envelope(app: Celery, queue: str, task: str, kwargs: dict, soft: float, hard: float) -> tuple[dict, dict]:
    """One message as Celery (protocol 2) and kombu's Redis transport would write it,
    sent to the default exchange: routed by queue name, so it survives a Redis that lost
    kombu's binding keys (FLUSHALL). Also returns the fields of its ``task-sent`` event
    (Celery's own, from ``as_task_v2``).

    Built without a broker connection: kombu's ``channel.prepare_message`` needs a live
    channel, and opening one against a Redis that is down retries for seconds, so the
    API's publish after commit (which must fail fast and quietly) would hang.

    The kwargs say what the message is for, as Flower shows them: the model, the
    signature (the shape of the call) and the queue; its jobs are not known until a
    worker claims them (the task's result names them: worker/task_report.py)."""
    task_id = str(uuid.uuid4())
    headers, properties, body, sent_event = app.amqp.as_task_v2(
        task_id, task, kwargs=kwargs,
        time_limit=hard, soft_time_limit=soft, ignore_result=True, create_sent_event=True)
    sent_event.update(queue=queue, exchange="", routing_key=queue)
    return _kombu_message(body, headers, properties, "", queue), sent_event


# Celery's event exchange. On Redis it is a fanout exchange: kombu PUBLISHes each event
# to the channel `/<db>.celeryev/<routing key>` (fanout_prefix, fanout_patterns).
EVENT_EXCHANGE = "celeryev"


def _sent_event(app: Celery, fields: dict) -> tuple[str, str]:
    """(channel, template) of the ``task-sent`` events of one signature's messages, as
    Celery's EventDispatcher would publish them with ``task_send_sent_event`` on: Flower
    then shows queued work before a worker takes it (state PENDING, with the message's
    kwargs and queue). The task id is a placeholder (_TASK_ID), filled in per copy."""
    hostname = anon_nodename()
    event = Event("task-sent", hostname=hostname, utcoffset=utcoffset(), pid=os.getpid(),
                  clock=app.clock.forward(), **dict(fields, uuid=_TASK_ID, root_id=_TASK_ID))
    db = broker().connection_pool.connection_kwargs.get("db", 0)
    message = _kombu_message(event, {"hostname": hostname}, {}, EVENT_EXCHANGE, "task.sent", base64_body=False)
    return f"/{db}.{EVENT_EXCHANGE}/task.sent", json.dumps(message)


# Placeholders substituted per copy: every message gets its own task id and delivery tag.
_TASK_ID, _TAG = "@@fresco-task-id@@", "@@fresco-delivery-tag@@"


def _template(message: dict) -> str:
    message["headers"]["id"] = message["headers"]["root_id"] = _TASK_ID
    message["properties"]["correlation_id"] = _TASK_ID
    message["properties"]["delivery_tag"] = _TAG
    return json.dumps(message)


def publish(demand: Demand, *, registry: Registry | None = None, raise_errors: bool = False) -> int:
    """Publish ceil(n/B) messages per signature in one pipelined round trip; returns how
    many went out. A broker outage is logged, not raised (unless asked): the jobs are
    safe in Postgres and the sweeper publishes for them once the broker is back."""
    demand = Demand({k: n for k, n in demand.items() if n > 0})
    if not demand:
        return 0
    registry = registry or get_registry()
    settings = get_settings()
    app = sender()
    send_events = app.conf.task_send_sent_event
    total = 0
    try:
        pipe = broker().pipeline(transaction=False)
        for (queue, model, sig), n in demand.items():
            b = batch_size(registry, model)
            soft, hard = time_limits(sig, b, settings)
            message, sent_event = _envelope(app, queue, RENDER_TASK, {"model": model, "signature": sig, "queue": queue},
                                            soft, hard)
            template = _template(message)
            channel, event = _sent_event(app, sent_event) if send_events else (None, None)
            for _ in range(math.ceil(n / b)):
                task_id = str(uuid.uuid4())
                pipe.lpush(queue, template.replace(_TASK_ID, task_id).replace(_TAG, str(uuid.uuid4())))
                if event is not None:
                    pipe.publish(channel, event.replace(_TASK_ID, task_id))
                total += 1
        pipe.execute()
    except Exception as e:  # redis and kombu raise many types for an unreachable broker
        log.warning("publish of %d messages failed (%s: %s); the sweeper will republish",
                    total, type(e).__name__, e)
        if raise_errors:
            raise
        return 0
    return total


def publish_webhooks(delivery_ids: list, settings: Settings | None = None) -> int:
    """One message per webhook delivery on the webhook queue, after the commit that made
    them. A failure is logged, not raised: the sweeper publishes for due deliveries."""
    if not delivery_ids:
        return 0
    settings = settings or get_settings()
    soft = settings.webhook_timeout_s + 30
    app = sender()
    try:
        pipe = broker().pipeline(transaction=False)
        for delivery_id in delivery_ids:
            message, _ = _envelope(app, WEBHOOK_QUEUE, WEBHOOK_TASK, {"delivery_id": str(delivery_id)}, soft, soft + 30)
            pipe.lpush(WEBHOOK_QUEUE, json.dumps(message))
        pipe.execute()
    except Exception as e:  # as publish(): any broker error
        log.warning("publish of %d webhook messages failed (%s: %s); the sweeper will republish",
                    len(delivery_ids), type(e).__name__, e)
        return 0
    return len(delivery_ids)
