"""An S3-compatible bucket (boto3).

A PUT is atomic in S3: the object appears whole when the upload completes.
Objects larger than the multipart threshold go up in parts and only appear at
``CompleteMultipartUpload``; parts of an upload that never completed are
listed by ``interrupted_uploads`` and aborted by ``remove_interrupted``.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backup.errors import TargetFull, TargetUnavailable
from backup.targets.base import Target, check_name

MULTIPART_THRESHOLD = 64 << 20


class S3Target(Target):
    """``s3://bucket/prefix`` at ``endpoint_url`` (AWS when omitted)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.label = f"s3://{bucket}/{self.prefix}"
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=8,
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=16 << 20, use_threads=False
        )
        try:
            if create_bucket:
                self._create_bucket()
            self._client.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            raise TargetUnavailable(target=self.label, detail=_describe(exc)) from exc

    def _create_bucket(self) -> None:
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def put(self, name: str, data: bytes) -> None:
        try:
            self._client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(name), Config=self._transfer)
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in ("EntityTooLarge", "QuotaExceeded", "InsufficientStorage"):
                raise TargetFull(target=self.label, detail=_describe(exc)) from exc
            raise TargetUnavailable(target=self.label, detail=f"uploading {name}: {_describe(exc)}") from exc

    def get(self, name: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise FileNotFoundError(name) from None
            raise TargetUnavailable(target=self.label, detail=f"reading {name}: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise TargetUnavailable(target=self.label, detail=f"reading {name}: {exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        names: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                names += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise TargetUnavailable(target=self.label, detail=f"listing: {_describe(exc)}") from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (ClientError, BotoCoreError) as exc:
            raise TargetUnavailable(target=self.label, detail=f"deleting {name}: {_describe(exc)}") from exc

    def _uploads(self) -> list[dict[str, Any]]:
        found = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        return found.get("Uploads", [])

    def interrupted_uploads(self) -> list[str]:
        return sorted(f"{u['Key'][len(self.prefix) :]}#{u['UploadId']}" for u in self._uploads())

    def remove_interrupted(self, older_than: float = 0.0) -> int:
        now = datetime.now(UTC)
        uploads = [u for u in self._uploads() if (now - u["Initiated"]).total_seconds() >= older_than]
        for upload in uploads:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return len(uploads)

    def close(self) -> None:
        self._client.close()


def _code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return str(exc)
