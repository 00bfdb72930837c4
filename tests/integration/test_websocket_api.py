"""The real WebSocket path in the emulator: API Gateway v2 WebSocket API -> our
$connect/$disconnect/$default handler running as a Lambda -> registry in DynamoDB,
and the notifier posting through ``@connections`` (with GoneException)."""

import asyncio
import io
import json
import sysconfig
import time
import zipfile

import pytest
import websockets

from shared.events import ProgressEvent
from shared.models import Connection, Subscription
from shared.services.push import YOUNG_S
from shared.wiring import build
from tests.conftest import JWT_SECRET, ROOT

pytestmark = pytest.mark.integration
STAGE = "ws"
CAP = 2  # connections per user, in this API's function


def _package() -> bytes:
    """The event Lambda's code package: functions/ and shared/ (dependencies come from
    the test venv's site-packages on PYTHONPATH, standing in for a dependency layer)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for pkg in ("functions", "shared"):
            for path in (ROOT / pkg).rglob("*.py"):
                z.write(path, path.relative_to(ROOT).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def ws_api(container, emulator):
    lam, gw = container.client("lambda"), container.client("apigatewayv2")
    name = f"{container.settings.names.table}-ws"
    api = gw.create_api(
        Name=name, ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )
    base = f"{emulator.endpoint}/_aws/execute-api/{api['ApiId']}/{STAGE}"
    fn = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::000000000000:role/crucible-ws",
        Handler="functions.events.websocket.handler",
        Code={"ZipFile": _package()},
        Timeout=30,
        Environment={
            "Variables": {
                "PYTHONPATH": sysconfig.get_paths()["purelib"],
                "CRUCIBLE_STAGE": container.settings.stage,
                "CRUCIBLE_JWT_SECRET": JWT_SECRET,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1",
                # as in AWS (infra/constructs/api.py): $connect asks @connections about a
                # user's older connections when the user is at the cap
                "CRUCIBLE_WS_MANAGEMENT_ENDPOINT": base,
                "CRUCIBLE_WS_MAX_CONNECTIONS_PER_USER": str(CAP),
            }
        },
    )
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{fn['FunctionArn']}/invocations"
    integ = gw.create_integration(
        ApiId=api["ApiId"], IntegrationType="AWS_PROXY", IntegrationUri=uri
    )
    for route in ("$connect", "$disconnect", "$default"):
        gw.create_route(
            ApiId=api["ApiId"], RouteKey=route, Target=f"integrations/{integ['IntegrationId']}"
        )
    gw.create_stage(ApiId=api["ApiId"], StageName=STAGE)
    yield {"url": base.replace("http://", "ws://"), "management": base}
    gw.delete_api(ApiId=api["ApiId"])
    lam.delete_function(FunctionName=name)


def test_connect_push_and_gone(container, ws_api):
    user = container.auth.register(email="ws-user@example.com", password="password123")
    token = container.auth.issue(user).access_token
    # The same services, with the push channel chosen by configuration: API Gateway.
    aws = build(
        container.settings.model_copy(update={"ws_management_endpoint": ws_api["management"]})
    )
    assert type(aws.notifier).__name__ == "ApiGatewayNotifier"
    topic = f"user:{user.id}"

    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_api["url"] + "?token=forged"):
                pass
        assert refused.value.response.status_code == 403

        async with websockets.connect(f"{ws_api['url']}?token={token}&format=seed000") as ws:
            subs = list(container.push.registry.subscribers(topic))
            assert len(subs) == 1 and subs[0].format == "seed000"
            cid = subs[0].connection_id
            event = ProgressEvent(topic=topic, kind="progress", event_id="p1", data={"epoch": 1})
            assert await asyncio.to_thread(aws.push.deliver, event) == 1
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {
                "type": "progress",
                "payload": {"epoch": 1},
            }
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            await ws.send(json.dumps({"action": "subscribe", "topic": "job:nope"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "TOPIC_NOT_FOUND"
        return cid

    cid = asyncio.run(scenario())
    # $disconnect (invoked asynchronously after the close) removed the connection...
    deadline = time.monotonic() + 10
    while container.push.registry.get(cid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container.push.registry.get(cid) is None
    # ...and a subscription left behind by a lost $disconnect is dropped on GoneException.
    container.push.registry.subscribe(Subscription(connection_id=cid, topic=topic, user_id=user.id))
    stale = ProgressEvent(topic=topic, kind="log", event_id="p2", data={})
    assert aws.push.deliver(stale) == 0
    assert list(container.push.registry.subscribers(topic)) == []


def test_token_as_subprotocol(container, ws_api):
    """Browsers cannot set headers on a WebSocket: the token travels as the subprotocol
    pair ["bearer", <token>] (out of the URL), and the $connect answer names "bearer"."""
    from functions.events import websocket as ws_handler

    user = container.auth.register(email="ws-protocol@example.com", password="password123")
    token = container.auth.issue(user).access_token

    async def scenario():
        async with websockets.connect(ws_api["url"], subprotocols=["bearer", token]) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            assert len(list(container.push.registry.subscribers(f"user:{user.id}"))) == 1
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_api["url"], subprotocols=["bearer", "forged"]):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())

    # The answer API Gateway turns into the handshake response: it must name the protocol.
    event = {
        "requestContext": {"routeKey": "$connect", "connectionId": "proto-1", "stage": STAGE},
        "headers": {"Host": "x", "Sec-WebSocket-Protocol": f"bearer, {token}"},
        "queryStringParameters": None,
    }
    answer = ws_handler.handle(event, container)
    assert answer["statusCode"] == 200
    assert answer["headers"] == {"Sec-WebSocket-Protocol": "bearer"}
    container.push.disconnect("proto-1")
    no_token = {**event, "headers": {"Sec-WebSocket-Protocol": "bearer"}}
    assert ws_handler.handle(no_token, container)["statusCode"] == 401


def test_a_follower_who_lost_the_right_is_closed_not_served(container, ws_api):
    """An admin follows another user's topic; once demoted, the next event closes the
    socket (API Gateway DeleteConnection) instead of reaching it."""
    from shared.adapters.dynamodb.identity import DynamoUsers
    from shared.services.push import PushService

    owner = container.auth.register(email="ws-owner@example.com", password="password123")
    admin = container.auth.register(email="ws-admin@example.com", password="password123")
    container.auth.users.set_role(admin.id, "admin")
    token = container.auth.issue(container.auth.users.get(admin.id)).access_token
    aws = build(
        container.settings.model_copy(update={"ws_management_endpoint": ws_api["management"]})
    )
    push = PushService(
        aws.push.registry, aws.push.events, aws.notifier, aws.push.owners, DynamoUsers(aws.table)
    )
    topic = f"user:{owner.id}"

    async def scenario():
        async with websockets.connect(f"{ws_api['url']}?token={token}&topic={topic}") as ws:
            first = ProgressEvent(topic=topic, kind="log", event_id="d1", data={"n": 1})
            assert await asyncio.to_thread(push.deliver, first) == 1
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["data"] == {"n": 1}
            container.auth.users.set_role(admin.id, "user")  # demoted
            second = ProgressEvent(topic=topic, kind="log", event_id="d2", data={"n": 2})
            assert await asyncio.to_thread(push.deliver, second) == 0
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(scenario())
    assert list(push.registry.subscribers(topic)) == []


def test_a_user_over_the_cap_is_refused_and_a_lost_disconnect_does_not_count(container, ws_api):
    """$connect counts the user's connections; at the cap it asks @connections
    (GetConnection) about the older ones and forgets those gone."""
    user = container.auth.register(email="ws-cap@example.com", password="password123")
    token = container.auth.issue(user).access_token
    url = f"{ws_api['url']}?token={token}"

    def held() -> set[str]:
        return {c.connection_id for c in container.push.registry.of_user(user.id, limit=10)}

    async def scenario():
        async with websockets.connect(url) as first:
            async with websockets.connect(url):
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(url):
                        pass
                assert refused.value.response.status_code == 403
                assert len(held()) == CAP  # the refused one left nothing behind
            deadline = time.monotonic() + 10  # the closed one's $disconnect
            while len(held()) > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(held()) == 1
            # one whose $disconnect was lost: registered long ago, unknown to API Gateway
            stale = Connection(
                connection_id="lost-disconnect",
                user_id=user.id,
                role="user",
                connected_at=time.time() - YOUNG_S - 60,
            )
            container.push.registry.add(stale)
            async with websockets.connect(url) as second:
                for ws in (first, second):
                    await ws.send(json.dumps({"action": "ping"}))
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
                assert "lost-disconnect" not in held() and len(held()) == CAP

    asyncio.run(scenario())
