"""OpenAI compatibility under /openai/v1: the official `openai` package works against the
farm with ``base_url="<farm>/openai/v1"`` and a farm API key. Images (generate, edit) and
the Batch API for image generations, mapped onto the farm's jobs and batches; errors in
OpenAI's shape (errors.py)."""
from fastapi import APIRouter

from api.openai_compat import batches, files, images
from api.openai_compat.errors import PREFIX, openai_shape

router = APIRouter(prefix="/openai/v1")
for _sub in (images.router, files.router, batches.router):
    router.include_router(_sub)

__all__ = ["PREFIX", "openai_shape", "router"]
