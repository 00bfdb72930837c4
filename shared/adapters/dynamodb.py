"""DynamoDB adapters over Crucible's single table.

Key schema — the one place it is written down (the local bootstrap and the CDK
app build the table from :data:`TABLE_SCHEMA`):

==============  ============================  ==========================  =============================  ==================
entity          PK                            SK                          GSI1PK                         GSI1SK
==============  ============================  ==========================  =============================  ==================
id counter      ``COUNTER``                   ``<entity>``                -                              -
user            ``USER#<id>``                 ``USER``                    ``USERS``                      ``<id:012>``
e-mail lock     ``EMAIL#<lower email>``       ``EMAIL``                   -                              -
project         ``PROJECT#<id>``              ``PROJECT``                 ``OWNER#<uid>#PROJECT``        ``<id:012>``
tag             ``TAG#<id>``                  ``TAG``                     ``OWNER#<uid>#TAG``            ``<id:012>``
tag-name lock   ``TAGNAME#<uid>#<lower name>`` ``TAGNAME``                -                              -
audio file      ``FILE#<id>``                 ``FILE``                    ``OWNER#<uid>#FILE``           ``<id:012>``
upload intent   ``UPLOAD#<file id>``          ``UPLOAD``                  -                              -
training job    ``JOB#<id>``                  ``JOB``                     ``OWNER#<uid>#JOB``            ``<id:012>``
dataset         ``DATASET#<uuid>``            ``DATASET``                 ``OWNER#<uid>#DATASET``        ``<created iso>#<uuid>``
connection      ``CONN#<connection id>``      ``CONN``                    -                              -
subscription    ``TOPIC#<topic>``             ``CONN#<connection id>``    ``CONN#<connection id>``       ``TOPIC#<topic>``
event           ``EVENTS#<topic>``            ``<iso time>#<event id>``   -                              -
event id lock   ``EVENT#<event id>``          ``EVENT``                   -                              -
rate window     ``RATE#<key>#<window>``       ``RATE``                    -                              -
==============  ============================  ==========================  =============================  ==================

Every item carries ``type`` (the entity name). Both indexes project all
attributes. Listings of everyone's resources use GSI2 (``GSI2PK`` = ``ALL#<entity>``, ``GSI2SK`` = ``<id:012>``). Items that
should disappear on their own (connections, subscriptions, events, rate windows)
carry ``expires_at`` (epoch seconds), the table's TTL attribute. The stream
(NEW_AND_OLD_IMAGES) carries event inserts to the push handler.

An audio file's analysis state lives on its item (``status``, ``task_id``,
``progress``, ``lease_until``); results live in the artifacts bucket and the item
points at the latest completed one.

Every state change is a conditional write: creation never overwrites
(``attribute_not_exists``), uniqueness (e-mail, tag name) is a lock item written
in the same transaction, and updates require the item to exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared.errors import Conflict, NotFound
from shared.events import ProgressEvent
from shared.models import (
    AudioFile,
    Connection,
    Dataset,
    Page,
    Project,
    Subscription,
    Tag,
    TrainingJob,
    UploadIntent,
    User,
    utcnow,
)

TABLE_SCHEMA: dict[str, Any] = {
    "partition_key": "PK",
    "sort_key": "SK",
    "ttl_attribute": "expires_at",
    "indexes": {"GSI1": ("GSI1PK", "GSI1SK"), "GSI2": ("GSI2PK", "GSI2SK")},
    "stream": "NEW_AND_OLD_IMAGES",
}

_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    # DynamoDB numbers are Decimals; a JSON round trip turns floats into them.
    clean = json.loads(json.dumps(item, default=str), parse_float=Decimal)
    return {k: _ser.serialize(v) for k, v in clean.items() if v is not None}


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | set):
        return [_plain(x) for x in v]
    return v


def from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    """Turn a DynamoDB-JSON item (also a stream image) into plain Python values."""
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def _pad(n: int) -> str:
    return f"{n:012d}"


def _is_conditional_failure(exc: ClientError) -> bool:
    code = exc.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False


class Table:
    """Thin helper over the low-level client: typed items in, plain dicts out."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        out = self.client.get_item(TableName=self.name, Key=_to_ddb({"PK": pk, "SK": sk}))
        return from_ddb(out["Item"]) if "Item" in out else None

    def put_new(self, item: dict[str, Any]) -> bool:
        """Put an item that must not exist yet; False when it already does."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_to_ddb(item),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def put(self, item: dict[str, Any]) -> None:
        self.client.put_item(TableName=self.name, Item=_to_ddb(item))

    def transact_new(self, *items: dict[str, Any]) -> bool:
        """Create several items atomically, none of which may exist; False on a clash."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": _to_ddb(it),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    }
                    for it in items
                ]
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def update(
        self,
        pk: str,
        sk: str,
        set_values: dict[str, Any],
        *,
        condition: str = "attribute_exists(PK)",
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        """Conditionally set (and remove) attributes; returns the new item, or None if the
        condition failed."""
        names = dict(names or {})
        vals = dict(values or {})
        parts = []
        for i, (k, v) in enumerate(set_values.items()):
            names[f"#s{i}"] = k
            vals[f":s{i}"] = v
            parts.append(f"#s{i} = :s{i}")
        expr = "SET " + ", ".join(parts)
        if remove:
            for i, k in enumerate(remove):
                names[f"#r{i}"] = k
            expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": _to_ddb({"PK": pk, "SK": sk}),
            "UpdateExpression": expr,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _to_ddb(vals),
            "ReturnValues": "ALL_NEW",
        }
        try:
            out = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return from_ddb(out["Attributes"])

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.name, Key=_to_ddb({"PK": pk, "SK": sk}))

    def transact_delete(self, *keys: tuple[str, str]) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self.name, "Key": _to_ddb({"PK": pk, "SK": sk})}}
                for pk, sk in keys
            ]
        )

    def next_id(self, entity: str) -> int:
        out = self.client.update_item(
            TableName=self.name,
            Key=_to_ddb({"PK": "COUNTER", "SK": entity}),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["n"]["N"])

    def query(
        self,
        pk: str,
        *,
        index: str | None = None,
        sk_prefix: str | None = None,
        forward: bool = True,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """All items under one partition key (following pagination), optionally by SK prefix."""
        pk_attr, sk_attr = TABLE_SCHEMA["indexes"][index] if index else ("PK", "SK")
        expr = "#pk = :pk"
        names = {"#pk": pk_attr}
        vals: dict[str, Any] = {":pk": pk}
        if sk_prefix is not None:
            expr += " AND begins_with(#sk, :sk)"
            names["#sk"] = sk_attr
            vals[":sk"] = sk_prefix
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": expr,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _to_ddb(vals),
            "ScanIndexForward": forward,
        }
        if index:
            kwargs["IndexName"] = index
        if limit:
            kwargs["Limit"] = limit
        seen = 0
        while True:
            out = self.client.query(**kwargs)
            for raw in out.get("Items", []):
                yield from_ddb(raw)
                seen += 1
                if limit and seen >= limit:
                    return
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def page(self, pk: str, *, index: str, skip: int, limit: int) -> tuple[int, list[dict]]:
        """Offset pagination (the seeds' ``skip``/``limit``) over one index partition.

        Reads the whole partition to count it; fine for the per-owner collections it
        serves (users, projects, tags), not for unbounded logs.
        """
        rows = list(self.query(pk, index=index))
        return len(rows), rows[skip : skip + limit]


def _iso(dt: datetime | str) -> str:
    return dt if isinstance(dt, str) else dt.isoformat()


class DynamoUsers:
    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _model(item: dict[str, Any]) -> User:
        return User(
            id=item["id"],
            email=item["email"],
            role=item["role"],
            full_name=item.get("full_name"),
            created_at=item["created_at"],
            password_hash=item.get("password_hash", ""),
        )

    def create(self, *, email: str, password_hash: str, role: str, full_name: str | None) -> User:
        email_key = f"EMAIL#{email.lower()}"
        if self.t.get(email_key, "EMAIL"):
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        uid = self.t.next_id("user")
        user = User(
            id=uid, email=email, role=role, full_name=full_name, password_hash=password_hash
        )
        item = {
            "PK": f"USER#{uid}",
            "SK": "USER",
            "type": "user",
            **user.model_dump(mode="json"),
            "password_hash": password_hash,
            "GSI1PK": "USERS",
            "GSI1SK": _pad(uid),
        }
        lock = {"PK": email_key, "SK": "EMAIL", "type": "email", "user_id": uid}
        if not self.t.transact_new(item, lock):
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        return user

    def get(self, user_id: int) -> User | None:
        item = self.t.get(f"USER#{user_id}", "USER")
        return self._model(item) if item else None

    def get_by_email(self, email: str) -> User | None:
        lock = self.t.get(f"EMAIL#{email.lower()}", "EMAIL")
        return self.get(lock["user_id"]) if lock else None

    def list(self, *, skip: int, limit: int) -> Page[User]:
        total, rows = self.t.page("USERS", index="GSI1", skip=skip, limit=limit)
        return Page[User](total=total, items=[self._model(r) for r in rows])

    def set_role(self, user_id: int, role: str) -> User:
        item = self.t.update(f"USER#{user_id}", "USER", {"role": role})
        if item is None:
            raise NotFound("User not found", code="USER_NOT_FOUND")
        return self._model(item)


class _OwnedRepository:
    """Shared shape of owner-scoped entities listed per owner (GSI1) or for all (GSI2)."""

    entity: str

    def __init__(self, table: Table) -> None:
        self.t = table

    def _key(self, rid: int) -> tuple[str, str]:
        return f"{self.entity.upper()}#{rid}", self.entity.upper()

    def _item(self, rid: int, owner_id: int, body: dict[str, Any]) -> dict[str, Any]:
        pk, sk = self._key(rid)
        return {
            "PK": pk,
            "SK": sk,
            "type": self.entity,
            **body,
            "GSI1PK": f"OWNER#{owner_id}#{self.entity.upper()}",
            "GSI1SK": _pad(rid),
            "GSI2PK": f"ALL#{self.entity.upper()}",
            "GSI2SK": _pad(rid),
        }

    def _get(self, rid: int) -> dict[str, Any] | None:
        return self.t.get(*self._key(rid))

    def _page(self, owner_id: int | None, skip: int, limit: int) -> tuple[int, list[dict]]:
        if owner_id is None:
            return self.t.page(f"ALL#{self.entity.upper()}", index="GSI2", skip=skip, limit=limit)
        return self.t.page(
            f"OWNER#{owner_id}#{self.entity.upper()}", index="GSI1", skip=skip, limit=limit
        )


class DynamoProjects(_OwnedRepository):
    entity = "project"

    def create(self, *, owner_id: int, name: str, description: str | None) -> Project:
        project = Project(
            id=self.t.next_id("project"), owner_id=owner_id, name=name, description=description
        )
        self.t.put_new(self._item(project.id, owner_id, project.model_dump(mode="json")))
        return project

    def get(self, project_id: int) -> Project | None:
        item = self._get(project_id)
        return Project.model_validate(item) if item else None

    def list(self, *, owner_id: int | None, skip: int, limit: int) -> Page[Project]:
        total, rows = self._page(owner_id, skip, limit)
        return Page[Project](total=total, items=[Project.model_validate(r) for r in rows])


class DynamoTags(_OwnedRepository):
    entity = "tag"

    @staticmethod
    def _name_lock(owner_id: int, name: str) -> tuple[str, str]:
        return f"TAGNAME#{owner_id}#{name.lower()}", "TAGNAME"

    def create(self, *, owner_id: int, name: str) -> Tag:
        lock_pk, lock_sk = self._name_lock(owner_id, name)
        if self.t.get(lock_pk, lock_sk):
            raise Conflict(f"Tag '{name}' already exists", field="name", code="TAG_EXISTS")
        tag = Tag(id=self.t.next_id("tag"), owner_id=owner_id, name=name)
        lock = {"PK": lock_pk, "SK": lock_sk, "type": "tagname", "tag_id": tag.id}
        if not self.t.transact_new(self._item(tag.id, owner_id, tag.model_dump(mode="json")), lock):
            raise Conflict(f"Tag '{name}' already exists", field="name", code="TAG_EXISTS")
        return tag

    def get(self, tag_id: int) -> Tag | None:
        item = self._get(tag_id)
        return Tag.model_validate(item) if item else None

    def list(self, *, owner_id: int | None, skip: int, limit: int) -> Page[Tag]:
        total, rows = self._page(owner_id, skip, limit)
        return Page[Tag](total=total, items=[Tag.model_validate(r) for r in rows])

    def delete(self, tag: Tag) -> None:
        self.t.transact_delete(self._key(tag.id), self._name_lock(tag.owner_id, tag.name))


class DynamoConnections:
    def __init__(self, table: Table, ttl_s: int) -> None:
        self.t = table
        self.ttl_s = ttl_s

    def _expiry(self) -> int:
        return int(time.time()) + self.ttl_s

    def add(self, connection: Connection) -> None:
        self.t.put(
            {
                "PK": f"CONN#{connection.connection_id}",
                "SK": "CONN",
                "type": "connection",
                **connection.model_dump(mode="json"),
                "expires_at": self._expiry(),
            }
        )

    def get(self, connection_id: str) -> Connection | None:
        item = self.t.get(f"CONN#{connection_id}", "CONN")
        if not item or item.get("expires_at", 0) < time.time():
            return None  # TTL deletion lags; an expired row counts as gone
        return Connection.model_validate(item)

    def subscribe(self, subscription: Subscription) -> None:
        cid = subscription.connection_id
        self.t.put(
            {
                "PK": f"TOPIC#{subscription.topic}",
                "SK": f"CONN#{cid}",
                "type": "subscription",
                **subscription.model_dump(mode="json"),
                "GSI1PK": f"CONN#{cid}",
                "GSI1SK": f"TOPIC#{subscription.topic}",
                "expires_at": self._expiry(),
            }
        )

    def subscribers(self, topic: str) -> list[Subscription]:
        now = time.time()
        return [
            Subscription.model_validate(r)
            for r in self.t.query(f"TOPIC#{topic}", sk_prefix="CONN#")
            if r.get("expires_at", 0) >= now
        ]

    def remove(self, connection_id: str) -> None:
        for sub in self.t.query(f"CONN#{connection_id}", index="GSI1"):
            self.t.delete(sub["PK"], sub["SK"])
        self.t.delete(f"CONN#{connection_id}", "CONN")


class DynamoEventLog:
    def __init__(self, table: Table, ttl_s: int) -> None:
        self.t = table
        self.ttl_s = ttl_s

    def publish(self, event: ProgressEvent) -> bool:
        expires = int(time.time()) + self.ttl_s
        body = event.model_dump(mode="json")
        lock = {
            "PK": f"EVENT#{event.event_id}",
            "SK": "EVENT",
            "type": "event_id",
            "expires_at": expires,
        }
        item = {
            "PK": f"EVENTS#{event.topic}",
            "SK": f"{_iso(event.timestamp)}#{event.event_id}",
            "type": "event",
            **body,
            "expires_at": expires,
        }
        return self.t.transact_new(lock, item)

    def recent(self, topic: str, *, limit: int) -> list[ProgressEvent]:
        rows = list(self.t.query(f"EVENTS#{topic}", forward=False, limit=limit))
        return [ProgressEvent.model_validate(r) for r in reversed(rows)]


class DynamoOwners:
    """Resolves a topic's resource (``job:5``) to its owner from the item's ``owner_id``."""

    def __init__(self, table: Table) -> None:
        self.t = table

    # Items that stand for a resource before it exists (a presigned upload's intent).
    _BEFORE = {"file": "UPLOAD"}

    def owner_of(self, kind: str, resource_id: str) -> int | None:
        for entity in (kind.upper(), self._BEFORE.get(kind)):
            item = self.t.get(f"{entity}#{resource_id}", entity) if entity else None
            if item and "owner_id" in item:
                return int(item["owner_id"])
        return None


class DynamoRateLimiter:
    def __init__(self, table: Table) -> None:
        self.t = table

    def hit(self, key: str, *, limit: int, window_s: int) -> tuple[int, int]:
        window = int(time.time()) // window_s
        reset = (window + 1) * window_s
        out = self.t.client.update_item(
            TableName=self.t.name,
            Key=_to_ddb({"PK": f"RATE#{key}#{window}", "SK": "RATE"}),
            UpdateExpression="ADD n :one SET expires_at = :exp, #t = :type",
            ExpressionAttributeNames={"#t": "type"},
            ExpressionAttributeValues=_to_ddb(
                {":one": 1, ":exp": reset + window_s, ":type": "rate"}
            ),
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["n"]["N"]), reset


class DynamoAudioFiles(_OwnedRepository):
    """Audio files and their analysis state machine:
    uploaded -> processing -> completed | failed, and completed | failed -> processing
    on a re-run. Each transition is one conditional update; a run may only write while
    it holds the file's current ``task_id``.
    """

    entity = "file"

    def next_id(self) -> int:
        return self.t.next_id("file")

    def next_result_id(self) -> int:
        return self.t.next_id("result")

    def create(self, f: AudioFile) -> bool:
        return self.t.put_new(self._item(f.id, f.owner_id, f.model_dump(mode="json")))

    def get(self, file_id: int) -> AudioFile | None:
        item = self._get(file_id)
        return AudioFile.model_validate(item) if item else None

    def list(self, *, owner_id: int | None, skip: int, limit: int) -> Page[AudioFile]:
        total, rows = self._page(owner_id, skip, limit)
        return Page[AudioFile](total=total, items=[AudioFile.model_validate(r) for r in rows])

    def update(self, file_id: int, fields: dict[str, Any]) -> AudioFile | None:
        item = self.t.update(*self._key(file_id), json.loads(json.dumps(fields, default=str)))
        return AudioFile.model_validate(item) if item else None

    def delete(self, file_id: int) -> None:
        self.t.delete(*self._key(file_id))

    # --- analysis state ---------------------------------------------------------
    def request(
        self, file_id: int, task_id: str, lease_s: int, *, first_only: bool
    ) -> AudioFile | None:
        """Queue an analysis; None when one is already running (or, with ``first_only``,
        when the file was ever analysed: a replayed upload event starts nothing)."""
        now = time.time()
        if first_only:
            cond = "attribute_exists(PK) AND #st = :uploaded AND attribute_not_exists(task_id)"
            values: dict[str, Any] = {":uploaded": "uploaded"}
        else:
            cond = "attribute_exists(PK) AND (#st <> :processing OR lease_until < :now)"
            values = {":processing": "processing", ":now": now}
        item = self.t.update(
            *self._key(file_id),
            {"status": "processing", "task_id": task_id, "progress": 0, "message": "Queued",
             "lease_until": now + lease_s},
            condition=cond,
            names={"#st": "status"},
            values=values,
            remove=("error", "run_started"),
        )  # fmt: skip
        return AudioFile.model_validate(item) if item else None

    def start_run(self, file_id: int, task_id: str, lease_s: int) -> bool:
        """Claim the run of ``task_id``; False when another worker already has it."""
        now = time.time()
        return (
            self.t.update(
                *self._key(file_id),
                {"run_started": now, "lease_until": now + lease_s},
                condition="task_id = :t AND #st = :processing AND attribute_not_exists(run_started)",
                names={"#st": "status"},
                values={":t": task_id, ":processing": "processing"},
            )
            is not None
        )

    def progress(self, file_id: int, task_id: str, pct: int, message: str) -> bool:
        return (
            self.t.update(
                *self._key(file_id),
                {"progress": pct, "message": message},
                condition="task_id = :t AND #st = :processing AND progress <= :p",
                names={"#st": "status"},
                values={":t": task_id, ":processing": "processing", ":p": pct},
            )
            is not None
        )

    def finish(self, file_id: int, task_id: str, fields: dict[str, Any]) -> AudioFile | None:
        """Move a running task to ``completed`` or ``failed`` (``fields`` holds the status)."""
        item = self.t.update(
            *self._key(file_id),
            json.loads(json.dumps(fields, default=str)),
            condition="task_id = :t AND #st = :processing",
            names={"#st": "status"},
            values={":t": task_id, ":processing": "processing"},
            remove=("lease_until", "run_started"),
        )
        return AudioFile.model_validate(item) if item else None

    # --- presigned upload intents -------------------------------------------------
    def put_intent(self, intent: UploadIntent, ttl_s: int) -> None:
        self.t.put(
            {"PK": f"UPLOAD#{intent.file_id}", "SK": "UPLOAD", "type": "upload_intent",
             **intent.model_dump(mode="json"), "expires_at": int(time.time()) + ttl_s}
        )  # fmt: skip

    def intent(self, file_id: int) -> UploadIntent | None:
        item = self.t.get(f"UPLOAD#{file_id}", "UPLOAD")
        return UploadIntent.model_validate(item) if item else None

    def drop_intent(self, file_id: int) -> None:
        self.t.delete(f"UPLOAD#{file_id}", "UPLOAD")


class DynamoJobs(_OwnedRepository):
    """Training jobs. ``transition`` is the only way status changes: one conditional
    update that succeeds only from the states the caller allows."""

    entity = "job"

    def create(self, job: TrainingJob) -> TrainingJob:
        job = job.model_copy(update={"id": self.t.next_id("job")})
        self.t.put_new(self._item(job.id, job.owner_id, job.model_dump(mode="json")))
        return job

    def get(self, job_id: int) -> TrainingJob | None:
        item = self._get(job_id)
        return TrainingJob.model_validate(item) if item else None

    def list(self, *, owner_id: int | None, skip: int, limit: int) -> Page[TrainingJob]:
        total, rows = self._page(owner_id, skip, limit)
        return Page[TrainingJob](total=total, items=[TrainingJob.model_validate(r) for r in rows])

    def transition(
        self,
        job_id: int,
        to: str,
        allowed_from: frozenset[str],
        fields: dict[str, Any] | None = None,
    ) -> TrainingJob | None:
        names = {"#st": "status"}
        values = {f":from{i}": s for i, s in enumerate(sorted(allowed_from))}
        cond = f"#st IN ({', '.join(values)})"
        item = self.t.update(
            *self._key(job_id),
            {"status": to, **json.loads(json.dumps(fields or {}, default=str))},
            condition=cond,
            names=names,
            values=values,
        )
        return TrainingJob.model_validate(item) if item else None

    def update(self, job_id: int, fields: dict[str, Any]) -> TrainingJob | None:
        item = self.t.update(*self._key(job_id), json.loads(json.dumps(fields, default=str)))
        return TrainingJob.model_validate(item) if item else None


class DynamoDatasets:
    """Datasets (string ids): ``DATASET#<id>``; listed per owner (GSI1) and for all (GSI2)
    by creation time. ``finish`` records an ingestion once: only from uploading/processing."""

    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _key(dataset_id: str) -> tuple[str, str]:
        return f"DATASET#{dataset_id}", "DATASET"

    def create(self, d: Dataset) -> None:
        order = f"{d.created_at.isoformat()}#{d.id}"
        self.t.put_new(
            {"PK": f"DATASET#{d.id}", "SK": "DATASET", "type": "dataset", **d.model_dump(mode="json"),
             "GSI1PK": f"OWNER#{d.owner_id}#DATASET", "GSI1SK": order, "GSI2PK": "ALL#DATASET", "GSI2SK": order}
        )  # fmt: skip

    def get(self, dataset_id: str) -> Dataset | None:
        item = self.t.get(*self._key(dataset_id))
        return Dataset.model_validate(item) if item else None

    def list(self, *, owner_id: int | None) -> list[Dataset]:
        pk, index = (
            (f"OWNER#{owner_id}#DATASET", "GSI1")
            if owner_id is not None
            else ("ALL#DATASET", "GSI2")
        )
        return [Dataset.model_validate(r) for r in self.t.query(pk, index=index, forward=False)]

    def finish(self, dataset_id: str, fields: dict[str, Any]) -> Dataset | None:
        item = self.t.update(
            *self._key(dataset_id),
            json.loads(json.dumps({**fields, "updated_at": utcnow()}, default=str)),
            condition="#st IN (:up, :proc)",
            names={"#st": "status"},
            values={":up": "uploading", ":proc": "processing"},
        )
        return Dataset.model_validate(item) if item else None


class DynamoJobRecords:
    """What a running job reports, kept under its item: one metric row per epoch
    (``JOB#<id>`` / ``METRIC#<epoch:06d>``) and log lines (``LOG#<time>#<n>``)."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def put_metrics(self, job_id: int, epoch: int, row: dict[str, Any]) -> None:
        self.t.put({"PK": f"JOB#{job_id}", "SK": f"METRIC#{epoch:06d}", "type": "job_metric", "job_id": job_id,
                    "epoch": epoch, **row, "created_at": utcnow().isoformat()})  # fmt: skip

    def metrics(self, job_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.t.query(f"JOB#{job_id}", sk_prefix="METRIC#", limit=limit))

    def put_log(
        self, job_id: int, n: int, level: str, message: str, log_type: str = "stdout"
    ) -> None:
        now = utcnow().isoformat()
        self.t.put({"PK": f"JOB#{job_id}", "SK": f"LOG#{now}#{n:06d}", "type": "job_log", "job_id": job_id,
                    "level": level, "message": message[:4000], "log_type": log_type, "created_at": now})  # fmt: skip

    def logs(self, job_id: int, limit: int = 500) -> list[dict[str, Any]]:
        return list(self.t.query(f"JOB#{job_id}", sk_prefix="LOG#", limit=limit))
