"""Code shared by the API and the workers (settings, the job spec, the model registry,
storage, dispatch), and in :mod:`fresco.client` the SDK and CLI, which need only the base
install.

``fresco.Client`` and ``fresco.AsyncClient`` (and the SDK's other names) are
:mod:`fresco.client`'s, loaded on first use: the API and the workers, which import
``fresco.settings`` and friends, never load the SDK.
"""
from typing import Any

_SDK_NAMES = ("Client", "AsyncClient", "ApiError", "ConnectionFailed", "Job", "Batch", "Model", "Page",
              "ResultLine", "RetryPolicy")
__all__ = list(_SDK_NAMES)


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        import fresco.client

        return getattr(fresco.client, name)
    raise AttributeError(f"module 'fresco' has no attribute {name!r}")
