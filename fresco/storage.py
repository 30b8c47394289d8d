"""Where images go: one small interface, two backends.

``s3://bucket/prefix`` stores through boto3 (any S3-compatible server; MinIO in compose)
and hands out presigned GET URLs. ``file:///path`` stores in a folder and hands out URLs
that the API serves itself, signed with an HMAC and an expiry. Either way a result URL is
absolute, works without the API key, and expires.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode, urlparse

from fresco.errors import NotFound, TransientError
from fresco.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def url(self, key: str, ttl_s: int | None = None) -> str: ...
    def check(self) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def copy(self, source: str, dest: str) -> None: ...


def sign(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, key: str, expires: int, signature: str, now: float | None = None) -> bool:
    """True if the signature is ours for this key and has not expired."""
    if expires < (now if now is not None else time.time()):
        return False
    # compare_digest refuses str with non-ASCII characters (TypeError): a forged URL
    # may carry anything, so compare bytes.
    return hmac.compare_digest(sign(secret, key, expires).encode(), signature.encode("utf-8", "surrogatepass"))


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise NotFound(f"no such object: {key!r}")
    return key


class FileStorage:
    """A local folder; results are served by the API's /v1/files route, which alone knows
    the signing secret (``signing_secret``: called when a URL is signed)."""

    def __init__(self, root: Path, settings: Settings, signing_secret: Callable[[], bytes] | None = None) -> None:
        self.root = root
        self.settings = settings
        self.signing_secret = signing_secret

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half an image, a re-run replaces it whole.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise TransientError(f"writing {key} to {self.root} failed: {e}") from e

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        # a folder, a path through a file, a NUL byte: not an object either
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError):
            raise NotFound(f"no such object: {key!r}") from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ValueError:  # a NUL byte
            return False

    def url(self, key: str, ttl_s: int | None = None) -> str:
        if self.signing_secret is None:
            raise RuntimeError("this process has no URL signing secret: only the API signs file URLs")
        expires = int(time.time()) + (ttl_s or self.settings.result_url_ttl_s)
        query = urlencode({"expires": expires, "sig": sign(self.signing_secret(), key, expires)})
        return f"{self.settings.base_url}/v1/files/{quote(key)}?{query}"

    def delete(self, keys: list[str]) -> None:
        """Remove these objects; a missing one is already gone (a repeated pass)."""
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as e:
                raise TransientError(f"deleting {key} from {self.root} failed: {e}") from e

    def copy(self, source: str, dest: str) -> None:
        """A copy of ``source`` under ``dest`` (written whole, as ``put`` writes);
        NotFound when there is no ``source``."""
        self.put(dest, self.get(source), "")

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TransientError(f"storage folder {self.root} unusable: {e}") from e
        if not os.access(self.root, os.W_OK):
            raise TransientError(f"storage folder {self.root} is not writable")


class S3Storage:
    """An S3-compatible bucket through boto3; results are presigned GET URLs."""

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        # botocore's own bounded retries (standard mode) absorb short blips; the worker's
        # retry loop handles longer outages. Short timeouts so a dead server is seen fast.
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=20,
                        signature_version="s3v4", s3={"addressing_style": "path"})
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)
        # Presigning is local computation; a second client signs for the public address.
        self.signer = self.client
        if settings.s3_public_endpoint_url and settings.s3_public_endpoint_url != settings.s3_endpoint_url:
            self.signer = boto3.client("s3", endpoint_url=settings.s3_public_endpoint_url,
                                       region_name=settings.s3_region, config=config)

    def _key(self, key: str) -> str:
        key = _safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _transient(self, action: str, key: str, e: Exception) -> TransientError:
        return TransientError(f"S3 {action} s3://{self.bucket}/{self._key(key)} failed: {type(e).__name__}: {e}")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as e:
            raise self._transient("put", key, e) from e

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no such object: {key!r}") from None
            raise self._transient("get", key, e) from e
        except BotoCoreError as e:
            raise self._transient("get", key, e) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._transient("head", key, e) from e
        except BotoCoreError as e:
            raise self._transient("head", key, e) from e

    def url(self, key: str, ttl_s: int | None = None) -> str:
        return self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=ttl_s or self.settings.result_url_ttl_s)

    def delete(self, keys: list[str]) -> None:
        """Remove these objects, 1,000 a request (S3's DeleteObjects limit); deleting a
        missing key succeeds, so a repeated pass is harmless."""
        from botocore.exceptions import BotoCoreError, ClientError

        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True})
            except (BotoCoreError, ClientError) as e:
                raise self._transient("delete", chunk[0], e) from e
            if answer.get("Errors"):
                err = answer["Errors"][0]
                raise TransientError(f"S3 delete s3://{self.bucket}/{err.get('Key')} failed: {err.get('Code')} "
                                     f"{err.get('Message')} ({len(answer['Errors'])} of {len(chunk)} keys)")

    def copy(self, source: str, dest: str) -> None:
        """A server-side copy (CopyObject: the bytes never leave S3, content type kept);
        NotFound when there is no ``source``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.copy_object(Bucket=self.bucket, Key=self._key(dest),
                                    CopySource={"Bucket": self.bucket, "Key": self._key(source)})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no such object: {source!r}") from None
            raise self._transient("copy", source, e) from e
        except BotoCoreError as e:
            raise self._transient("copy", source, e) from e

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as e:
            raise TransientError(f"S3 bucket {self.bucket} unreachable: {type(e).__name__}: {e}") from e


def open_storage(settings: Settings | None = None, signing_secret: Callable[[], bytes] | None = None) -> Storage:
    """The configured backend. ``signing_secret`` gives the key file URLs are signed with
    (the API passes api.url_secret.current); S3 presigns with its own credentials."""
    settings = settings or get_settings()
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        return FileStorage(Path(url.path), settings, signing_secret)
    if url.scheme == "s3":
        return S3Storage(url.netloc, url.path, settings)
    raise ValueError(f"FRESCO_STORAGE_URL must be s3://bucket/prefix or file:///path, not {settings.storage_url!r}")
