"""Both storage backends against real servers: a folder, and an S3 server over HTTP."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from fresco.errors import NotFound, TransientError
from fresco.settings import Settings
from fresco.storage import FileStorage, S3Storage, open_storage


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path):
    if request.param == "file":
        return FileStorage(tmp_path / "store", Settings(storage_url=f"file://{tmp_path}/store"))
    server = request.getfixturevalue("s3_server")
    settings = Settings(storage_url=f"s3://{server.bucket}/pfx", s3_endpoint_url=server.url)
    return open_storage(settings)


def test_put_get_exists_overwrite(storage):
    key = "tenant/batch/job.png"
    assert not storage.exists(key)
    storage.put(key, b"one", "image/png")
    assert storage.exists(key) and storage.get(key) == b"one"
    storage.put(key, b"two", "image/png")  # a re-run overwrites the same object
    assert storage.get(key) == b"two"
    with pytest.raises(NotFound):
        storage.get("tenant/batch/missing.png")
    storage.check()


def test_copy_makes_an_object_of_its_own(storage):
    """The result cache's copy (worker/result_cache.py): the copy outlives its source."""
    storage.put("t/b/a.png", b"image", "image/png")
    storage.copy("t/b/a.png", "t/c/b.png")
    storage.delete(["t/b/a.png"])
    assert storage.get("t/c/b.png") == b"image" and not storage.exists("t/b/a.png")
    with pytest.raises(NotFound):
        storage.copy("t/b/a.png", "t/c/d.png")
    assert not storage.exists("t/c/d.png")


@pytest.mark.parametrize("bad", ["../x.png", "/abs.png", "a//b.png", "a/./b.png", ""])
def test_keys_cannot_escape(storage, bad):
    with pytest.raises(NotFound):
        storage.put(bad, b"x", "image/png")


def test_s3_presigned_url_fetches_without_credentials_and_expires(s3_server):
    settings = Settings(storage_url=f"s3://{s3_server.bucket}/pfx", s3_endpoint_url=s3_server.url, result_url_ttl_s=900)
    storage = S3Storage(s3_server.bucket, "pfx", settings)
    storage.put("t/b/j.png", b"\x89PNG data", "image/png")
    url = storage.url("t/b/j.png")
    r = httpx.get(url)  # a plain GET, no AWS credentials: the URL carries its signature
    assert r.status_code == 200 and r.content == b"\x89PNG data"
    q = parse_qs(urlparse(url).query)
    # moto checks neither signature nor expiry, so check what a real S3 would
    assert q["X-Amz-Expires"] == ["900"] and q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and "X-Amz-Signature" in q
    assert urlparse(url).path == f"/{s3_server.bucket}/pfx/t/b/j.png"
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key="pfx/t/b/j.png")["ContentType"] == "image/png"


def test_s3_public_endpoint_is_what_urls_name(s3_server):
    settings = Settings(storage_url=f"s3://{s3_server.bucket}/pfx", s3_endpoint_url=s3_server.url,
                        s3_public_endpoint_url="http://files.example.test:9000")
    url = S3Storage(s3_server.bucket, "pfx", settings).url("t/b/j.png")
    assert url.startswith(f"http://files.example.test:9000/{s3_server.bucket}/pfx/t/b/j.png?")


def test_s3_outage_is_a_transient_error():
    settings = Settings(storage_url="s3://b/p", s3_endpoint_url="http://127.0.0.1:9")  # nothing listens on port 9
    storage = open_storage(settings)
    with pytest.raises(TransientError):
        storage.put("t/b/j.png", b"x", "image/png")
    with pytest.raises(TransientError):
        storage.check()
