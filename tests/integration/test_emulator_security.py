"""The emulator's gate (functions/local/emulator_gate.py) against a MiniStack of its own:
every way a client signs for S3 works with the data directory's secret and with nothing
else; what a presigned URL or POST form signs is all it can do (S3, that one request);
only the configured browser origins get CORS, and only the emulator's own host names
are answered."""

import base64
import json
import time
import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from functions.local.emulator import Emulator, free_port, new_credentials
from tests.conftest import MINISTACK

pytestmark = pytest.mark.integration

ORIGIN = "http://localhost:5173"  # a front-end's dev server (cdk.json's dev cors_origins)
BUCKET = "gate-test"
OTHER_BUCKET = "gate-test-other"
TABLE = "gate-test-users"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"  # what must not leak


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    e = Emulator(MINISTACK, tmp_path_factory.mktemp("gate"), free_port(), cors_origins=[ORIGIN])
    yield e.start()
    e.stop()


def client(emu, service: str, creds=None, version: str | None = None):
    creds = creds or emu.credentials
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=Config(signature_version=version) if version else None,
    )


def s3(emu, creds=None, version: str | None = None):
    return client(emu, "s3", creds, version)


@pytest.fixture(scope="module")
def bucket(emu):
    s3(emu).create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture(scope="module")
def table(emu):
    """A users table with a password hash in it: what the attacks below are after."""
    ddb = client(emu, "dynamodb")
    ddb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=TABLE, Item={"PK": {"S": "USER#1"}, "password_hash": {"S": HASH}})
    return TABLE


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


def test_a_presigned_url_reaches_s3_and_nothing_else(emu, bucket, table):
    own = s3(emu, version="s3v4")
    own.put_object(Bucket=bucket, Key="private/other.bin", Body=HASH.encode())
    # A part URL signs host and Content-Length; MiniStack routes on X-Amz-Target first,
    # on an Authorization scope, on an Action in a form-encoded body. JSON allows
    # trailing spaces, so a Scan fits any signed length.
    scan = json.dumps({"TableName": table}).encode().ljust(512)
    key = f"incoming/{uuid.uuid4().hex}.bin"
    upload = own.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = own.generate_presigned_url(
        "upload_part",
        Params={
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload,
            "PartNumber": 1,
            "ContentLength": len(scan),
        },
    )
    as_json = {"Content-Type": "application/x-amz-json-1.0"}
    for headers, body in (
        ({"X-Amz-Target": "DynamoDB_20120810.Scan", **as_json}, scan),  # the reported attack
        ({"X-Amz-Target": "AWSEvents.PutEvents", **as_json}, scan),
        ({"Authorization": "Bearer Credential=x/20260101/us-east-1/dynamodb/aws4_request"}, scan),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"Action=ListQueues".ljust(512)),
        ({"X-Amz-Copy-Source": f"/{bucket}/private/other.bin"}, scan),  # UploadPartCopy
    ):
        r = httpx.put(part, content=body, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert HASH not in r.text
    assert own.list_parts(Bucket=bucket, Key=key, UploadId=upload).get("Parts", []) == []
    assert httpx.put(part, content=b"p" * len(scan)).status_code == 200  # what it was made for

    # SigV2 signs only S3's own query parameters: any other one is refused, not ignored.
    url = s3(emu).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "private/other.bin"}
    )
    assert "AWSAccessKeyId=" in url and httpx.get(url).status_code == 200
    assert httpx.get(url + "&Action=ListQueues").status_code == 403
    scoped = {"Authorization": "Bearer Credential=x/20260101/us-east-1/sqs/aws4_request"}
    assert httpx.get(url, headers=scoped).status_code == 403
    # A presigned URL is S3's, even one made with the stack's key for another service.
    queues = client(emu, "sqs").generate_presigned_url("list_queues")
    assert httpx.get(queues).status_code == 403


def test_a_header_signature_covers_the_target_it_is_routed_by(emu, table):
    creds = emu.credentials
    scan = json.dumps({"TableName": table}).encode()
    # Signed for S3, with X-Amz-Target added afterwards: MiniStack would route it to
    # DynamoDB on the unsigned header.
    request = AWSRequest(
        "POST",
        emu.endpoint + "/",
        data=scan,
        headers={"Content-Type": "application/x-amz-json-1.0"},
    )
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key), "s3", "us-east-1"
    ).add_auth(request)
    headers = dict(request.headers.items())
    r = httpx.post(
        emu.endpoint + "/",
        content=scan,
        headers={**headers, "X-Amz-Target": "DynamoDB_20120810.Scan"},
    )
    assert r.status_code == 403 and HASH not in r.text, r.text
    # The SDK signs the target it sends.
    items = client(emu, "dynamodb").scan(TableName=table)["Items"]
    assert items[0]["password_hash"]["S"] == HASH


def _form(parts: list[tuple[str, str | bytes]], boundary: str = "gate-test-boundary"):
    """A multipart/form-data body written by hand: (Content-Disposition parameters,
    value) per part."""
    body = b"".join(
        b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n"
        % (
            boundary.encode(),
            params.encode(),
            value if isinstance(value, bytes) else value.encode(),
        )
        for params, value in parts
    )
    body += b"--%s--\r\n" % boundary.encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _arriving(body: bytes) -> Iterator[bytes]:
    """``body`` in three pieces, a moment apart (the part named file in the second), so
    the server sees the form arrive in several chunks."""
    cut = body.index(b'name="file"')
    for piece in (body[:cut], body[cut : cut + 64], body[cut + 64 :]):
        yield piece
        time.sleep(0.2)


def test_a_presigned_post_writes_exactly_what_its_policy_allows(emu, bucket):
    own = s3(emu, version="s3v4")
    own.create_bucket(Bucket=OTHER_BUCKET)
    victim = f"stored/{uuid.uuid4().hex}/recording.wav"
    own.put_object(Bucket=bucket, Key=victim, Body=b"inspected")
    mine = f"incoming/{uuid.uuid4().hex}.zip"
    post = own.generate_presigned_post(
        bucket, mine, Conditions=[["content-length-range", 1, 64]], ExpiresIn=300
    )
    fields = [(f'name="{name}"', value) for name, value in post["fields"].items()]
    wide_open = {
        "expiration": "2099-01-01T00:00:00Z",
        "conditions": [
            ["starts-with", f"${name}", ""]
            for name in ("key", "bucket", "x-amz-algorithm", "x-amz-credential", "x-amz-date")
        ],
    }
    policy = base64.b64encode(json.dumps(wide_open).encode()).decode()
    file = ('name="file"; filename="x.zip"', b"replaced")
    attacks = {
        # The reported one: MiniStack took the last key and policy, unquoted names too.
        "an unquoted key and policy, to another bucket": (
            OTHER_BUCKET,
            [*fields, ("name=key", victim), ("name=policy", policy), file],
        ),
        "a second key and policy": (
            bucket,
            [*fields, ('name="key"', victim), ('name="policy"', policy), file],
        ),
        "a second key in another case": (bucket, [*fields, ('name="Key"', victim), file]),
        "a key and policy with filenames": (
            bucket,
            [
                *fields,
                ('name="key"; filename="k"', victim),
                ('name="policy"; filename="p"', policy),
                file,
            ],
        ),
        "a key and policy after the file": (
            bucket,
            [*fields, file, ('name="key"', victim), ('name="policy"', policy)],
        ),
        "a field the policy does not name": (
            bucket,
            [*fields, ('name="x-amz-meta-owner"', "admin"), file],
        ),
        "the same form, to another bucket": (OTHER_BUCKET, [*fields, file]),
    }
    for what, (target, parts) in attacks.items():
        body, headers = _form(parts)
        r = httpx.post(f"{emu.endpoint}/{target}", content=_arriving(body), headers=headers)
        assert r.status_code in (400, 403), (what, r.status_code, r.text)
    body, headers = _form([*fields, file])  # MiniStack also routes on a query's Action
    r = httpx.post(f"{emu.endpoint}/{bucket}?Action=ListQueues", content=body, headers=headers)
    assert r.status_code == 403, r.text

    assert own.get_object(Bucket=bucket, Key=victim)["Body"].read() == b"inspected"
    assert own.list_objects_v2(Bucket=OTHER_BUCKET).get("KeyCount", 0) == 0
    assert own.list_objects_v2(Bucket=bucket, Prefix=mine).get("KeyCount", 0) == 0
    # The form as given, as a browser or httpx sends it: that key, within its size.
    too_big = httpx.post(post["url"], data=post["fields"], files={"file": b"x" * 65})
    assert too_big.status_code == 400
    ok = httpx.post(post["url"], data=post["fields"], files={"file": ("x.zip", b"mine")})
    assert ok.status_code == 204, ok.text
    assert own.get_object(Bucket=bucket, Key=mine)["Body"].read() == b"mine"


def test_only_the_emulators_own_host_names_are_answered(emu, bucket):
    """A page whose own domain resolves to 127.0.0.1 (DNS rebinding) sends its Host."""
    health = emu.endpoint + "/_ministack/health"
    for host in ("evil.example", f"evil.example:{emu.port}", f"127.0.0.1.nip.io:{emu.port}"):
        r = httpx.get(health, headers={"Host": host, "Origin": "http://" + host})
        assert r.status_code == 403, host
    for host in (f"127.0.0.1:{emu.port}", f"localhost:{emu.port}"):
        assert httpx.get(health, headers={"Host": host}).status_code == 200
    own = s3(emu, version="s3v4")
    own.put_object(Bucket=bucket, Key="host.txt", Body=b"x")
    url = own.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "host.txt"})
    assert httpx.get(url).content == b"x"
    assert httpx.get(url, headers={"Host": f"evil.example:{emu.port}"}).status_code == 403
