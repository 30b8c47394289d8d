"""files.create, files.retrieve and files.content for the Batch API: input files are
uploaded with purpose `batch`; output and error files (purpose `batch_output`) are written
by the farm when a batch ends. The bytes live in the farm's object storage
(fresco.constants.OPENAI_FILE_KEY), the rows in Postgres (db/openai_files.py)."""
from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.deps import SessionDep, StorageDep, TenantDep
from api.openai_compat import batch_files
from api.openai_compat.errors import openai_responses
from api.openai_compat.schemas import OpenAIFileObject
from db import openai_files as files_db
from db.models import OpenAIFile
from fresco.constants import OPENAI_FILE_KEY
from fresco.errors import InvalidSpec, NotFound
from fresco.storage import Storage

router = APIRouter(prefix="/files", tags=["openai"])

_CREATE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "JSONL, one request a line: {custom_id, method: POST, "
                                           "url: /v1/images/generations, body}."},
                   "purpose": {"type": "string", "enum": ["batch"]}}}}}}}


def file_object(row: OpenAIFile) -> dict:
    return {"id": row.id, "bytes": row.bytes, "created_at": int(row.created_at.timestamp()),
            "filename": row.filename, "purpose": row.purpose}


def store_file(session: Session, storage: Storage, tenant: uuid.UUID, data: bytes, filename: str,
               purpose: str) -> OpenAIFile:
    """Object first, then the row: a row never names a missing object."""
    file_id = f"file-{uuid.uuid4().hex}"
    key = OPENAI_FILE_KEY.format(tenant=tenant, file=file_id)
    storage.put(key, data, "application/jsonl")
    return files_db.add_file(session, file_id=file_id, tenant_id=tenant, purpose=purpose, filename=filename,
                             size=len(data), key=key)


def file_or_404(session: Session, tenant: uuid.UUID, file_id: str) -> OpenAIFile:
    row = files_db.get_file(session, tenant_id=tenant, file_id=file_id[:64])
    if row is None:
        raise NotFound(f"no file {file_id[:80]!r}", field="file_id")
    return row


@router.post("", response_model=OpenAIFileObject, openapi_extra=_CREATE_BODY, summary="OpenAI files.create (purpose batch)",
             responses=openai_responses(413))
async def create_file(request: Request, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    """A Batch API input file: its lines are checked for OpenAI's request shape now (a bad
    line is a 400 naming it, and nothing is stored); their bodies when a batch is created
    from it."""
    form = await request.form()
    unknown = sorted(set(form) - {"file", "purpose"})
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field (send file and purpose)", field=unknown[0])
    purpose = form.get("purpose")
    if purpose != "batch":
        raise InvalidSpec(f"purpose: must be batch (the farm's files are Batch API inputs), not {purpose!r}",
                          field="purpose")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidSpec("file: a file is required", field="file")
    data = await upload.read()
    for _ in batch_files.requests(data):  # the shape of every line, before anything is stored
        pass
    row = await run_in_threadpool(store_file, session, storage, tenant, data, upload.filename or "batch.jsonl",
                                  "batch")
    return file_object(row)


@router.get("/{file_id}", response_model=OpenAIFileObject, summary="OpenAI files.retrieve",
            responses=openai_responses(404))
def retrieve_file(file_id: str, tenant: TenantDep, session: SessionDep) -> dict:
    return file_object(file_or_404(session, tenant, file_id))


@router.get("/{file_id}/content", summary="OpenAI files.content: the file's bytes",
            response_class=Response, responses={200: {"content": {"application/jsonl": {"schema": {"type": "string"}}}},
                                                **openai_responses(404)})
def file_content(file_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> Response:
    """An input file as uploaded, or a batch's output or error file: JSONL in OpenAI's line
    format. Result URLs in an output file expire (FRESCO_RESULT_URL_TTL_S); the farm's
    GET /v1/batches/{id}/results.jsonl signs fresh ones."""
    row = file_or_404(session, tenant, file_id)
    return Response(storage.get(row.key), media_type="application/jsonl")
