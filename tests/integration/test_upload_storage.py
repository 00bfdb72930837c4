"""Upload storage against the emulator: deletes that erase every version, part URLs
signed for their size, and an ingestion that fails (whatever fails) ending ``failed``."""

import time
import uuid

import httpx
import pytest

from shared.adapters.s3 import S3ObjectStore
from shared.models import Principal

pytestmark = pytest.mark.integration


@pytest.fixture
def versioned(container) -> S3ObjectStore:
    """A bucket of its own, versioned as the stage's buckets are in AWS."""
    s3 = container.client("s3")
    bucket = f"versioned-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return S3ObjectStore(s3, bucket)


def versions(store: S3ObjectStore, prefix: str) -> list[str]:
    r = store.client.list_object_versions(Bucket=store.bucket, Prefix=prefix)
    return [v["Key"] for v in r.get("Versions", []) + r.get("DeleteMarkers", [])]


def test_deletes_erase_every_version_and_delete_marker(versioned):
    s3 = versioned.client
    for body in (b"v1", b"v2", b"v3"):
        versioned.put("audio/1/7/a.wav", body)
    s3.delete_object(Bucket=versioned.bucket, Key="audio/1/7/a.wav")  # a plain delete: a marker
    versioned.put("audio/1/7/stored/b.wav", b"kept")
    versioned.put("audio/1/7/stored/b.wav", b"kept again")
    versioned.put("audio/1/70/c.wav", b"another file's")
    versioned.put("audio/1/7/a.wav.bak", b"another key")

    versioned.delete("audio/1/7/a.wav")  # that key only, every version
    assert versions(versioned, "audio/1/7/a.wav") == ["audio/1/7/a.wav.bak"]
    versioned.delete_prefix("audio/1/7/")
    assert versions(versioned, "audio/1/7/") == []
    assert versions(versioned, "audio/1/70/") == ["audio/1/70/c.wav"]  # the prefix, not more


def test_part_urls_are_signed_for_their_exact_size(versioned):
    mp = versioned.start_multipart(
        "audio/1/8/x.wav",
        part_sizes=[5 * 1024 * 1024, 10],
        content_type=None,
        expires=600,
        metadata={"declared-size": str(5 * 1024 * 1024 + 10)},
    )
    last = mp["parts"][1]
    assert last["size"] == 10 and "content-length" in last["url"]
    assert httpx.put(last["url"], content=b"x" * 11).status_code == 403
    assert httpx.put(last["url"], content=b"x" * 9).status_code == 403
    assert httpx.put(last["url"], content=b"x" * 10).status_code == 200


def test_an_ingestion_that_fails_for_any_reason_ends_failed(container):
    """An arrival whose object is gone by the time it is handled (the download fails):
    the dataset is failed with a reason, not left ``uploading``."""
    from functions.events import datasets as handler

    alice = Principal(user_id=700_000 + time.time_ns() % 1000, role="user")
    grant = container.datasets.presign(alice, name="gone", size=1000)
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "000000000000",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0",
            "bucket": {"name": container.settings.names.uploads_bucket},
            "object": {"key": grant["key"], "size": 1000, "etag": "e", "sequencer": "01"},
            "reason": "PostObject",
        },
    }
    assert handler.handle(event, container)["status"] == "failed"
    d = container.datasets.get(alice, grant["dataset_id"])
    assert d.status == "failed" and "internal error" in d.error
    assert "NoSuchKey" not in d.error and "404" not in d.error  # no internal detail
