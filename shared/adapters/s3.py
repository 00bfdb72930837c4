"""S3 object storage (also the emulator's, through ``AWS_ENDPOINT_URL``).

Deleting erases: the buckets are versioned in AWS (noncurrent versions expire after 30
days), so a plain DeleteObject would only add a delete marker and keep every byte
retrievable for a month. ``delete`` and ``delete_prefix`` remove every version and
every delete marker instead.

Presigned URLs are signed with SigV4, which signs request headers too: each part URL
of a multipart upload carries its exact ``Content-Length``, so S3 refuses a part of any
other size.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

from botocore.exceptions import ClientError

from shared.audio import content_disposition
from shared.errors import InvalidInput


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @cached_property
    def _signer(self) -> Any:
        """The client that presigns: SigV4 whatever the region (unless told explicitly,
        botocore presigns S3 with SigV2, which cannot sign ``Content-Length``)."""
        meta = self.client.meta
        import boto3
        from botocore.config import Config

        custom = {}
        if not meta.endpoint_url.split("://", 1)[-1].split("/", 1)[0].endswith("amazonaws.com"):
            custom["endpoint_url"] = meta.endpoint_url  # an emulator given by configuration
        return boto3.session.Session().client(
            "s3",
            region_name=meta.region_name,
            config=meta.config.merge(Config(signature_version="s3v4")),
            **custom,
        )

    def put(self, key: str, body: bytes, *, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def head(self, key: str) -> dict[str, Any] | None:
        """``{"size", "etag", "metadata"}`` of the current version, None if there is none."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return {
            "size": int(r["ContentLength"]),
            "etag": str(r["ETag"]),
            "metadata": dict(r.get("Metadata") or {}),
        }

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def upload(self, key: str, path: str) -> None:
        self.client.upload_file(path, self.bucket, key)

    def download(self, key: str, path: str) -> None:
        self.client.download_file(self.bucket, key, path)

    def etag(self, key: str) -> str:
        return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])

    def size(self, key: str) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def stream(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        yield from body.iter_chunks(chunk)

    # --- deletes that erase ----------------------------------------------------------
    def delete(self, key: str) -> None:
        """Every version of ``key`` (and its delete markers): nothing of it stays."""
        self._erase(v for v in self._versions(key) if v["Key"] == key)

    def delete_prefix(self, prefix: str) -> None:
        """Every version of every object under ``prefix``."""
        self._erase(self._versions(prefix))

    def _versions(self, prefix: str) -> list[dict[str, str]]:
        found = []
        for page in self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                found.append({"Key": v["Key"], "VersionId": v["VersionId"]})
        return found  # listed whole before deleting: deleting while paging skips entries

    def _erase(self, versions: Any) -> None:
        batch = list(versions)
        for i in range(0, len(batch), 1000):
            r = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch[i : i + 1000], "Quiet": True}
            )
            if r.get("Errors"):
                first = r["Errors"][0]
                raise RuntimeError(
                    f"S3 kept {len(r['Errors'])} object version(s) under s3://{self.bucket}/, "
                    f"e.g. {first.get('Key')} ({first.get('Code')}: {first.get('Message')})"
                )

    # --- direct-to-S3 transfers (boto3's own presigning, SigV4) -----------------------
    def presign_get(self, key: str, *, filename: str | None = None, expires: int = 900) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    def presign_post(
        self, key: str, *, max_bytes: int, content_type: str | None, expires: int
    ) -> dict:
        """A browser-friendly POST: exactly this key, at most ``max_bytes``."""
        fields, conditions = {}, [["content-length-range", 1, max_bytes]]
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        return self._signer.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires
        )

    def start_multipart(
        self,
        key: str,
        *,
        part_sizes: list[int],
        content_type: str | None,
        expires: int,
        metadata: dict[str, str] | None = None,
    ) -> dict:
        """A multipart upload with one URL per part, each signed for its exact size;
        ``metadata`` (set here, by the platform) ends up on the completed object."""
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if metadata:
            extra["Metadata"] = metadata
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)[
            "UploadId"
        ]
        urls = [
            {
                "part_number": n,
                "size": size,
                "url": self._signer.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": key,
                        "UploadId": upload_id,
                        "PartNumber": n,
                        "ContentLength": size,
                    },
                    ExpiresIn=expires,
                ),
            }
            for n, size in enumerate(part_sizes, 1)
        ]
        return {"upload_id": upload_id, "parts": urls}

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict]) -> None:
        """Raises InvalidInput with S3's reason when S3 refuses (unknown upload id, a
        part missing or with another ETag, parts out of order or too small)."""
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p["part_number"], "ETag": p["etag"]} for p in parts]
                },
            )
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) >= 500:
                raise
            raise InvalidInput(
                f"S3 could not complete the upload ({err.get('Code')}): {err.get('Message')}",
                field="parts",
            ) from None
