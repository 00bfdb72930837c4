"""The local stack is the developer's machine: what it keeps stays in its data directory,
its AWS emulator answers only those holding that directory's credentials (never a web
page the developer happens to have open, nor one on a domain rebound to 127.0.0.1), a
presigned URL or POST is good for its one S3 request and nothing else, and tokens stay
out of URLs and logs."""

import asyncio
import base64
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import numpy as np
import pytest
import websockets
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from functions.local.emulator import credentials
from tests.audio.synth import wav_bytes
from tests.conftest import start_stack, stop_stack

pytestmark = pytest.mark.e2e

EVIL = "http://evil.example"
TABLE = "crucible-local-data"
UPLOADS = "crucible-local-uploads"
ARTIFACTS = "crucible-local-artifacts"


def client(stack, service: str, key: str | None = None, secret: str | None = None, **kw):
    """boto3 against the stack's emulator, with the stack's credentials unless given."""
    own = credentials(stack.data_dir / "aws")
    return boto3.client(
        service,
        endpoint_url=stack.emulator_endpoint,
        region_name="us-east-1",
        aws_access_key_id=key or own.access_key_id,
        aws_secret_access_key=secret or own.secret_access_key,
        **kw,
    )


def refused(call) -> int:
    with pytest.raises(ClientError) as denied:
        call()
    return denied.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_emulator_answers_only_the_data_directorys_credentials(stack, alice):
    # What a web page can send: no signature, or a made-up one, with its Origin.
    scan = json.dumps({"TableName": TABLE}).encode()
    target = {
        "X-Amz-Target": "DynamoDB_20120810.Scan",
        "Content-Type": "application/x-amz-json-1.0",
    }
    forged = (
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
    )
    for extra in ({}, {"Authorization": forged, "X-Amz-Date": "20260101T000000Z"}):
        r = httpx.post(
            stack.emulator_endpoint + "/", content=scan, headers={**target, "Origin": EVIL, **extra}
        )
        assert r.status_code == 403, r.text
        assert alice.email not in r.text and "password" not in r.text
        assert "access-control-allow-origin" not in r.headers

    # The well-known default key, the right key with a wrong secret, no signature at all.
    assert refused(client(stack, "dynamodb", "test", "test").list_tables) == 403
    own = credentials(stack.data_dir / "aws")
    assert (
        refused(client(stack, "dynamodb", own.access_key_id, "not-the-secret").list_tables) == 403
    )
    unsigned = client(stack, "s3", config=Config(signature_version=UNSIGNED))
    assert refused(lambda: unsigned.list_objects_v2(Bucket=UPLOADS)) == 403

    # The attack of the report: make one's own account admin. Refused, and nothing changed.
    promote = client(stack, "dynamodb", "test", "test")
    assert (
        refused(
            lambda: promote.update_item(
                TableName=TABLE,
                Key={"PK": {"S": f"USER#{alice.id}"}, "SK": {"S": "USER"}},
                UpdateExpression="SET #r = :admin",
                ExpressionAttributeNames={"#r": "role"},
                ExpressionAttributeValues={":admin": {"S": "admin"}},
            )
        )
        == 403
    )
    assert alice.http.get("/auth/me").json()["role"] == "user"

    # The stack's own credentials, made for its data directory and readable by its owner.
    assert TABLE in client(stack, "dynamodb").list_tables()["TableNames"]
    assert (stack.data_dir / "aws" / "credentials").stat().st_mode & 0o777 == 0o600


def test_the_emulator_sends_no_wildcard_cors(stack):
    preflight = httpx.options(
        stack.emulator_endpoint + "/",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amz-target,content-type",
        },
    )
    assert preflight.status_code == 403
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    # Even an answer the page may not read carries no CORS grant: the health probe, and a
    # presigned URL (a page that got one from the API still cannot read the emulator).
    s3 = client(stack, "s3")
    key = f"scratch/cors/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=UPLOADS, Key=key, Body=b"cors")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": UPLOADS, "Key": key})
    for r in (
        httpx.get(stack.emulator_endpoint + "/_ministack/health", headers={"Origin": EVIL}),
        httpx.get(url, headers={"Origin": EVIL}),
    ):
        assert r.status_code == 200
        assert not any(h.startswith("access-control-") for h in r.headers), r.headers


def test_a_part_url_uploads_its_part_and_reaches_nothing_else(stack, alice):
    size = 4096
    g = alice.http.post("/audio-files/multipart", json={"filename": "x.wav", "size": size})
    assert g.status_code == 201, g.text
    part = g.json()["parts"][0]["url"]
    # The report's attack: the URL signs host and Content-Length only, MiniStack routes
    # on X-Amz-Target; a Scan padded to the signed length read every user's password hash.
    scan = json.dumps({"TableName": TABLE}).encode().ljust(size)
    events = json.dumps(
        {"Entries": [{"Source": "crucible.local-batch", "DetailType": "x", "Detail": "{}"}]}
    ).encode()
    for target, body in (
        ("DynamoDB_20120810.Scan", scan),
        ("AWSEvents.PutEvents", events.ljust(size)),
    ):
        r = httpx.put(
            part,
            content=body,
            headers={
                "X-Amz-Target": target,
                "Content-Type": "application/x-amz-json-1.0",
                "Origin": EVIL,
            },
        )
        assert r.status_code == 403, r.text
        assert alice.email not in r.text and "argon2" not in r.text
    assert httpx.put(part, content=bytes(size)).status_code == 200  # its own use still works


def test_a_presigned_post_writes_its_one_key_only(stack, alice):
    g = alice.http.post("/audio-files/presign", json={"filename": "n.wav", "size": 64}).json()
    target = f"jobs/{uuid.uuid4().int % 10**6}/checkpoints/last.pt"
    # The report's attack: the form as given, plus an unquoted key and one's own wide-open
    # policy (MiniStack read the last ones), posted to another bucket.
    names = {"bucket", *(n.lower() for n in g["fields"])} - {"policy", "x-amz-signature"}
    conditions = [["starts-with", f"${name}", ""] for name in sorted(names)]
    wide_open = base64.b64encode(
        json.dumps({"expiration": "2099-01-01T00:00:00Z", "conditions": conditions}).encode()
    ).decode()
    parts = [(f'name="{name}"', value) for name, value in g["fields"].items()]
    parts += [("name=key", target), ("name=policy", wide_open)]
    parts += [('name="file"; filename="last.pt"', "pickled")]
    body = b"".join(
        f"--b0undary\r\nContent-Disposition: form-data; {params}\r\n\r\n{value}\r\n".encode()
        for params, value in parts
    )
    r = httpx.post(
        f"{stack.emulator_endpoint}/{ARTIFACTS}",
        content=body + b"--b0undary--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b0undary", "Origin": EVIL},
    )
    assert r.status_code == 403, r.text
    assert refused(lambda: client(stack, "s3").head_object(Bucket=ARTIFACTS, Key=target)) == 404


def test_a_page_on_a_rebound_domain_reaches_neither_server(stack):
    """DNS rebinding: a page on evil.example, its name then resolved to 127.0.0.1, talks
    to the local ports under its own Host name (and, same-origin, reads the answers)."""
    for url, status in (
        (stack.api("/health"), 400),  # the dev server's TrustedHostMiddleware
        (stack.emulator_endpoint + "/_ministack/health", 403),  # the emulator's gate
    ):
        port = urlsplit(url).port
        r = httpx.get(url, headers={"Host": f"evil.example:{port}", "Origin": EVIL})
        assert r.status_code == status, (url, r.text)
        assert not any(h.startswith("access-control-") for h in r.headers)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert httpx.get(url, headers={"Host": host}).status_code == 200, (url, host)


def _files_holding(root: Path, content: bytes) -> list[Path]:
    """Files under ``root`` whose bytes are ``content`` (only same-sized ones are read)."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                if path.stat().st_size == len(content) and path.read_bytes() == content:
                    found.append(path)
            except OSError:
                continue  # another process's file came and went
    return found


def test_objects_live_under_the_data_directory_and_stacks_stay_apart(stack, alice, tmp_path):
    noise = np.random.default_rng().uniform(-0.5, 0.5, 8_000)
    recording = wav_bytes(noise, 16_000)
    r = alice.http.post(
        "/audio-files/upload", files={"file": ("noise.wav", recording, "audio/wav")}
    )
    assert r.status_code == 201, r.text

    held = _files_holding(stack.data_dir, recording)
    assert held and all(p.is_relative_to(stack.data_dir / "aws") for p in held)
    # MiniStack's own default place for objects is machine-wide: nothing of ours there.
    assert _files_holding(Path(tempfile.gettempdir()) / "ministack-data", recording) == []
    keys = [
        o["Key"]
        for o in client(stack, "s3").list_objects_v2(Bucket=UPLOADS, Prefix=f"audio/{alice.id}/")[
            "Contents"
        ]
    ]

    # A second stack, on a data directory of its own (and its own new credentials): its
    # ids start at 1 too, but it sees nothing of the first one's.
    other = start_stack(tmp_path / "other", seed_credentials=False)
    try:
        mine, theirs = credentials(stack.data_dir / "aws"), credentials(other.data_dir / "aws")
        assert mine != theirs
        assert refused(client(other, "s3", mine.access_key_id, mine.secret_access_key).list_buckets)
        s3 = client(other, "s3")
        assert s3.list_objects_v2(Bucket=UPLOADS).get("KeyCount", 0) == 0
        for key in keys:
            assert refused(lambda key=key: s3.head_object(Bucket=UPLOADS, Key=key)) == 404
        assert _files_holding(other.data_dir, recording) == []
    finally:
        stop_stack(other)


def _server_log(stack) -> Path:
    return stack.data_dir.parent / f"{stack.data_dir.name}-server.log"


def test_tokens_in_websocket_urls_stay_out_of_the_log(stack, alice):
    marker = uuid.uuid4().hex  # finds this connection's line

    async def connect():
        async with websockets.connect(f"{stack.ws}/ws?token={alice.token}&probe={marker}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}

    asyncio.run(connect())
    deadline = time.monotonic() + 10
    while marker not in (text := _server_log(stack).read_text()):
        assert time.monotonic() < deadline, "the connection was not logged"
        time.sleep(0.1)
    assert alice.token not in text
    assert f'"WebSocket /ws?token=[redacted]&probe={marker}" [accepted]' in text


def test_the_token_travels_as_a_websocket_subprotocol(stack, alice):
    async def scenario():
        async with websockets.connect(f"{stack.ws}/ws", subprotocols=["bearer", alice.token]) as ws:
            assert ws.subprotocol == "bearer"
            key = f"scratch/{alice.id}/{uuid.uuid4().hex}/notes.txt"
            await asyncio.to_thread(
                client(stack, "s3").put_object, Bucket=UPLOADS, Key=key, Body=b"y" * 7
            )
            msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert msg["type"] == "status" and msg["payload"]["key"] == key
        with pytest.raises(websockets.InvalidStatus) as refused_:
            async with websockets.connect(f"{stack.ws}/ws", subprotocols=["bearer", "forged"]):
                pass
        assert refused_.value.response.status_code == 403

    asyncio.run(scenario())
    assert alice.token not in _server_log(stack).read_text()
