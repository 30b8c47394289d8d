"""Wire shapes of the OpenAI-compatible API, as the `openai` package reads and writes them
(OpenAIImagesResponse, OpenAIFileObject, Batch, the batch file lines). Requests refuse fields the farm
does not act on (OpenAI's quality, style, user, ...): a 400 naming the field."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fresco.spec import MAX_SEED

MAX_IMAGES = 10  # n: OpenAI's bound
_EXT = "Farm extension (send it with the openai package's `extra_body`)."


class OpenAIImageOptions(BaseModel):
    """What images.generate takes, and each line's `body` of a batch input file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(description="What to draw; the model's max_prompt_chars at most.")
    model: str | None = Field(default=None, description="A farm model id (GET /v1/models); default: the registry's "
                                                        "default model.")
    n: int = Field(default=1, ge=1, le=MAX_IMAGES, description=f"Images, 1..{MAX_IMAGES}: n jobs of the farm.")
    size: str | None = Field(default=None, description="`WxH` within the model's limits (a 400 names them), or "
                                                       "`auto`: the model's default size.")
    response_format: Literal["url", "b64_json"] = Field(
        default="url", description="`url`: a signed result URL that expires (FRESCO_RESULT_URL_TTL_S); "
                                   "`b64_json`: the image itself.")
    output_format: Literal["png", "webp", "jpeg"] | None = Field(default=None, description="Default png.")
    negative_prompt: str | None = Field(default=None, description=_EXT)
    steps: int | None = Field(default=None, ge=1, description=_EXT)
    guidance_scale: float | None = Field(default=None, ge=0, description=_EXT)
    scheduler: str | None = Field(default=None, description=_EXT)
    beta_schedule: str | None = Field(default=None, description=_EXT)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED - MAX_IMAGES,
                             description=f"{_EXT} Image i of n gets seed + i.")


class OpenAIImageEditOptions(OpenAIImageOptions):
    """images.edit's fields besides the files (`image`, `mask`), as multipart form fields."""

    model_config = ConfigDict(extra="forbid", strict=False)  # form fields arrive as text
    strength: float | None = Field(default=None, gt=0, le=1, description=f"{_EXT} How far from the image, (0, 1]; "
                                                                         "default 0.8.")


class OpenAIImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int = Field(description="Unix seconds.")
    data: list[OpenAIImageData]
    size: str = Field(description="WxH of the images.")
    output_format: str


class OpenAIFileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class OpenAIBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    input_file_id: str = Field(description="A file uploaded with purpose `batch`.")
    endpoint: Literal["/v1/images/generations"] = Field(description="The only endpoint the farm batches.")
    completion_window: Literal["24h"] = Field(description="`24h`, the only value OpenAI takes. The farm runs "
                                                          "batches as fast as it can and never expires them.")
    metadata: dict[str, str] | None = Field(default=None, max_length=16,
                                            description="Up to 16 string pairs, kept on the farm batch.")


class OpenAIRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class OpenAIBatchObject(BaseModel):
    id: str = Field(description="`batch_` + the farm batch's id in hex (GET /v1/batches/{id} shows it too).")
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: None = None
    input_file_id: str
    completion_window: str
    status: Literal["in_progress", "finalizing", "completed", "cancelling", "cancelled"] = Field(description=(
        "in_progress while jobs are queued or running; finalizing while the output files are written; "
        "completed (every request ended, succeeded or not: see request_counts); cancelling after a cancel "
        "while jobs still run; cancelled. A bad input file is a 400 at create, so never validating or failed."))
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: OpenAIRequestCounts
    metadata: dict[str, Any] | None


class OpenAIBatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIBatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
