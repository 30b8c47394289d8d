"""The farm's client side: the Python SDK (:class:`Client`, :class:`AsyncClient`) and the
``fresco`` command line (fresco/client/cli.py), which uses the SDK.

This subpackage needs only the base install (httpx, pydantic, pydantic-settings, rich):

    pip install .              # the SDK and the CLI
    pip install '.[api]'       # plus the API, migrations, sweeper and Flower
    pip install '.[worker]'    # plus a render worker (torch, diffusers)

Nothing here imports the server packages (``api``, ``worker``, ``db``) at import time; a
server-side command (``fresco keys create``) imports them when it runs and says which extra
to install if they are missing.
"""
from fresco.client.aio import AsyncClient
from fresco.client.bodies import BatchBody
from fresco.client.errors import (
                                  ApiError,
                                  BadRequest,
                                  Conflict,
                                  ConnectionFailed,
                                  FrescoError,
                                  InvalidRequest,
                                  NotFound,
                                  PayloadTooLarge,
                                  RateLimited,
                                  ServerError,
                                  ServiceUnavailable,
                                  Unauthorized,
)
from fresco.client.resources import Batch, Job, JobResult, Model, Page, ResultLine
from fresco.client.retry import RetryPolicy
from fresco.client.sdk import Client

__all__ = ["ApiError", "AsyncClient", "BadRequest", "Batch", "BatchBody", "Client", "Conflict", "ConnectionFailed",
           "FrescoError", "InvalidRequest", "Job", "JobResult", "Model", "NotFound", "Page", "PayloadTooLarge",
           "RateLimited", "ResultLine", "RetryPolicy", "ServerError", "ServiceUnavailable", "Unauthorized"]
