"""The emulator's gate (functions/local/emulator_gate.py) against a MiniStack of its own:
every way a client signs for S3 works with the data directory's secret and with nothing
else, and only the configured browser origins get CORS."""

import time
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config

from functions.local.emulator import Emulator, free_port, new_credentials
from tests.conftest import MINISTACK

pytestmark = pytest.mark.integration

ORIGIN = "http://localhost:5173"  # a front-end's dev server (cdk.json's dev cors_origins)
BUCKET = "gate-test"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    e = Emulator(MINISTACK, tmp_path_factory.mktemp("gate"), free_port(), cors_origins=[ORIGIN])
    yield e.start()
    e.stop()


def s3(emu, creds=None, version: str | None = None):
    creds = creds or emu.credentials
    return boto3.client(
        "s3",
        endpoint_url=emu.endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=Config(signature_version=version) if version else None,
    )


@pytest.fixture(scope="module")
def bucket(emu):
    s3(emu).create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.mark.parametrize("version", ["s3v4", None])  # None: botocore's default (SigV2 presigns)
def test_presigned_urls_and_forms_work_with_the_secret_only(emu, bucket, version):
    own, other = s3(emu, version=version), s3(emu, new_credentials(), version=version)
    key = f"objects/{uuid.uuid4().hex} with space+plus.bin"
    own.put_object(Bucket=bucket, Key=key, Body=b"original")

    url = own.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert httpx.get(url).content == b"original"
    forged = other.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert httpx.get(forged).status_code == 403
    expired = own.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=1
    )
    time.sleep(2)  # an expiry is a matter of seconds; nothing to wait on but the clock
    assert httpx.get(expired).status_code == 403

    post = own.generate_presigned_post(bucket, key + ".form")
    assert httpx.post(post["url"], data=post["fields"], files={"file": b"form"}).status_code == 204
    theirs = other.generate_presigned_post(bucket, key + ".form")
    r = httpx.post(theirs["url"], data=theirs["fields"], files={"file": b"replaced"})
    assert r.status_code == 403
    tampered = dict(post["fields"], key=key)  # the signed policy names the other key
    r = httpx.post(post["url"], data=tampered, files={"file": b"replaced"})
    assert r.status_code in (400, 403)
    assert own.get_object(Bucket=bucket, Key=key)["Body"].read() == b"original"
    assert own.get_object(Bucket=bucket, Key=key + ".form")["Body"].read() == b"form"

    upload = own.create_multipart_upload(Bucket=bucket, Key=key + ".parts")["UploadId"]
    part = own.generate_presigned_url(
        "upload_part",
        Params={"Bucket": bucket, "Key": key + ".parts", "UploadId": upload, "PartNumber": 1},
    )
    assert httpx.put(part, content=b"p" * 10).status_code == 200


def test_only_the_configured_origins_get_cors(emu, bucket):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"}
    allowed = httpx.options(f"{emu.endpoint}/{bucket}", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(
        f"{emu.endpoint}/{bucket}", headers={"Origin": "http://evil.example", **preflight}
    )
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers

    own = s3(emu)
    own.put_object(Bucket=bucket, Key="cors.txt", Body=b"x")
    url = own.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "cors.txt"})
    assert httpx.get(url, headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == (
        ORIGIN
    )
    assert "access-control-allow-origin" not in httpx.get(url, headers={"Origin": "null"}).headers


def test_everything_else_needs_a_signature(emu):
    for method, path in (
        ("POST", "/_ministack/reset"),  # MiniStack's own control plane
        ("GET", "/_ministack/config"),
        ("GET", "/"),
    ):
        assert httpx.request(method, emu.endpoint + path).status_code == 403
    assert httpx.get(emu.endpoint + "/_ministack/health").status_code == 200
