"""/v1/uploads: input images for image-to-image and inpainting jobs."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import StorageDep, TenantDep
from api.errors import AUTHED, error_responses
from api.image_inputs import store_upload
from api import images
from api.schemas import UploadPublic

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=error_responses(*AUTHED))


@router.post("", status_code=201, summary="Upload an input image (PNG, JPEG or WebP body)",
             response_model=UploadPublic, responses=error_responses(413, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/png": {"schema": {"type": "string", "format": "binary"}},
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                 "image/webp": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request, tenant: TenantDep, storage: StorageDep) -> dict:
    """Send the image as the raw body. Answers `{"id", "ref", "width", "height", "format"}`;
    put `ref` (`upload:ID`) in a spec's `init_image` or `mask_image`. The image is checked
    (format, at most 20 MB and 4096 pixels a side, decompression bombs refused) before it
    is stored; the same image uploaded twice gets the same id."""
    data = await request.body()
    if len(data) > images.MAX_BYTES:
        from fresco.errors import PayloadTooLarge

        raise PayloadTooLarge(f"image: {len(data)} bytes; at most {images.MAX_BYTES} bytes")
    return await run_in_threadpool(store_upload, storage, tenant, data)
