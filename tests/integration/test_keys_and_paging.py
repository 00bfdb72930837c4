"""Keys that spread and pages whose cost is the page (issue 16), against the emulator.

Every DynamoDB call of the adapters under test is recorded with botocore's events on the
client (``before-parameter-build``, ``after-call``): which partitions (of the table and of
its indexes) each write lands on, and how many items each read returns."""

import base64
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.dynamodb.datasets import DynamoDatasets
from shared.adapters.dynamodb.identity import DynamoUsers
from shared.adapters.dynamodb.projects import DynamoTags
from shared.adapters.dynamodb.recordings import DynamoAudioFiles
from shared.adapters.dynamodb.table import (
    ID_BLOCK,
    LIST_SHARDS,
    MAX_SKIP,
    IdBlocks,
    Table,
)
from shared.errors import InvalidInput
from shared.models import AudioFile, Dataset
from tests.conftest import api_get

pytestmark = pytest.mark.integration

WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


class Recorder:
    """Writes per partition (``PK`` of the table, ``GSI1:``/``GSI2:`` of an index) and
    items read, from the calls a client makes."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()
        self.read = 0

    def _write(self, body: dict) -> None:
        key = body.get("Item") or body.get("Key")
        self.writes[key["PK"]["S"]] += 1
        for index in ("GSI1", "GSI2"):
            if f"{index}PK" in (body.get("Item") or {}):
                self.writes[f"{index}:{body['Item'][f'{index}PK']['S']}"] += 1

    def before(self, model, params, **_):
        if model.name in WRITES:
            self._write(params)
        elif model.name == "TransactWriteItems":
            for op in params["TransactItems"]:
                for kind in ("Put", "Update", "Delete"):
                    if kind in op:
                        self._write(op[kind])

    def after(self, model, parsed, **_):
        if model.name == "Query":
            self.read += parsed.get("Count", 0)
        elif model.name == "GetItem":
            self.read += "Item" in parsed
        elif model.name == "BatchGetItem":
            self.read += sum(len(v) for v in parsed.get("Responses", {}).values())


@contextmanager
def recording(table: Table):
    rec = Recorder()
    events = table.client.meta.events
    events.register("before-parameter-build.dynamodb", rec.before, unique_id="h1-before")
    events.register("after-call.dynamodb", rec.after, unique_id="h1-after")
    try:
        yield rec
    finally:
        events.unregister("before-parameter-build.dynamodb", unique_id="h1-before")
        events.unregister("after-call.dynamodb", unique_id="h1-after")


def new_owner() -> int:
    return time.time_ns() % 10**12


def add_files(files: DynamoAudioFiles, owner: int, n: int) -> list[int]:
    ids = []
    for i in range(n):
        fid = files.next_id()
        f = AudioFile(
            id=fid,
            owner_id=owner,
            filename=f"f{i}.wav",
            original_filename=f"f{i}.wav",
            key=f"audio/{owner}/{fid}.wav",
            file_size=10,
            sample_rate=16000,
            duration=1.0,
            format="wav",
            content_type="audio/wav",
        )
        assert files.create(f)
        ids.append(fid)
    return ids


def test_creations_by_many_owners_write_no_shared_partition_often(container):
    files = DynamoAudioFiles(container.table)
    owners = [new_owner() + i for i in range(40)]
    n = 5 * len(owners)
    with recording(container.table) as rec:
        for owner in owners:
            add_files(files, owner, 5)
    assert not [k for k in rec.writes if k in ("COUNTER", "GSI1:USERS", "GSI2:ALL#FILE")]
    # everyone's listing and its count spread over the shards; ids over the counters
    bound = 2 * n // LIST_SHARDS + 2
    worst = rec.writes.most_common(3)
    assert worst[0][1] <= bound, worst
    counters = {k: v for k, v in rec.writes.items() if k.startswith("COUNTER#file#")}
    assert sum(counters.values()) <= n // ID_BLOCK + 1, counters


def test_an_analysis_updates_an_item_no_index_copies(container):
    files = DynamoAudioFiles(container.table)
    (fid,) = add_files(files, new_owner(), 1)
    with recording(container.table) as rec:
        assert files.request(fid, "task-1", 60, first_only=True)
        assert files.start_run(fid, "task-1", 60)
        for pct in range(10, 90, 10):
            assert files.progress(fid, "task-1", pct, f"{pct}%")
        assert files.finish(fid, "task-1", {"status": "completed", "progress": 100})
    assert set(rec.writes) == {f"FILE#{fid}"}
    item = container.table.get(f"FILE#{fid}", "FILE")
    assert not {k for k in item if k.startswith("GSI")}, item  # nothing for an index to copy
    assert files.list(owner_id=item["owner_id"], skip=0, limit=5).items[0].status == "completed"


def test_a_page_reads_what_it_returns_whatever_the_listing_holds(container):
    files = DynamoAudioFiles(container.table)
    small, large = new_owner(), new_owner() + 1
    add_files(files, small, 12)
    add_files(files, large, 150)
    reads = {}
    for owner in (small, large):
        with recording(container.table) as rec:
            page = files.list(owner_id=owner, skip=0, limit=10)
        assert len(page.items) == 10
        reads[owner] = rec.read
    # the index rows of the page (and one past it), the items, the count
    assert reads[small] == reads[large] <= 10 + 1 + 10 + 1
    with recording(container.table) as rec:
        files.list(owner_id=large, skip=100, limit=10)
    assert rec.read <= 100 + 10 + 1 + 10 + 1  # an offset costs its depth, never the listing
    with recording(container.table) as rec:
        everyone = files.list(owner_id=None, skip=0, limit=10)
    assert len(everyone.items) == 10
    # each shard's first small page, the page's items, one count item per shard
    assert rec.read <= LIST_SHARDS * 10 + 10 + LIST_SHARDS


def test_skip_pages_are_slices_of_the_listing_and_totals_are_exact(container):
    files = DynamoAudioFiles(container.table)
    owner = new_owner()
    ids = add_files(files, owner, 23)
    whole = files.list(owner_id=owner, skip=0, limit=1000)
    assert [f.id for f in whole.items] == sorted(ids) and whole.total == 23
    assert whole.next_cursor is None
    for skip, limit in ((0, 5), (5, 5), (20, 5), (22, 1), (23, 5), (40, 3)):
        page = files.list(owner_id=owner, skip=skip, limit=limit)
        assert [f.id for f in page.items] == sorted(ids)[skip : skip + limit]
        assert page.total == 23
    files.delete(ids[0])
    files.delete(ids[0])  # a repeated delete counts down once
    assert files.list(owner_id=owner, skip=0, limit=1).total == 22
    with pytest.raises(InvalidInput) as too_deep:
        files.list(owner_id=owner, skip=MAX_SKIP + 1, limit=1)
    assert too_deep.value.field == "skip" and "cursor" in too_deep.value.detail


def test_cursor_pages_cover_everything_once_while_items_are_added(container):
    files = DynamoAudioFiles(container.table)
    owners = [new_owner() + i for i in range(3)]
    before = {fid for o in owners for fid in add_files(files, o, 9)}
    seen: list[int] = []
    page = files.list(owner_id=None, skip=0, limit=7)
    while True:
        seen += [f.id for f in page.items]
        add_files(files, owners[0], 1)  # written while the reader pages
        if page.next_cursor is None:
            break
        page = files.list(owner_id=None, skip=0, limit=7, cursor=page.next_cursor)
    assert len(seen) == len(set(seen)), "a row came twice"
    assert seen == sorted(seen) and before <= set(seen)
    # an owner's listing too, and a cursor is only good for the listing it came from
    mine = files.list(owner_id=owners[1], skip=0, limit=4)
    rest = files.list(owner_id=owners[1], skip=0, limit=100, cursor=mine.next_cursor)
    assert [f.id for f in mine.items + rest.items] == sorted(
        f.id for f in files.list(owner_id=owners[1], skip=0, limit=100).items
    )

    def forged(after: str) -> str:  # this listing's, going on after ``after``
        data = json.loads(base64.urlsafe_b64decode(mine.next_cursor + "=" * 4))
        raw = json.dumps({**data, "a": after}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert files.list(owner_id=owners[1], skip=0, limit=4, cursor=forged("0")).items
    hostile = (forged(""), forged("\ud800"), forged("x" * 300), "e30", "not a cursor")
    for bad in (mine.next_cursor.replace(mine.next_cursor[3], "!"), *hostile):
        with pytest.raises(InvalidInput):  # a 400, never the table's ValidationException
            files.list(owner_id=owners[1], skip=0, limit=4, cursor=bad)
    with pytest.raises(InvalidInput):  # another owner's listing
        files.list(owner_id=owners[2], skip=0, limit=4, cursor=mine.next_cursor)


def test_ids_are_unique_across_threads_and_processes(container):
    client, name = container.table.client, container.table.name
    entity = f"test{uuid.uuid4().hex[:6]}"
    processes = [Table(client, name, ids=IdBlocks()) for _ in range(4)]  # each its own blocks

    def allocate(t: Table) -> list[int]:
        return [t.next_id(entity) for _ in range(150)]

    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(allocate, processes * 2))  # two threads draw on each process
    ids = [i for run in runs for i in run]
    assert len(ids) == len(set(ids)) == 8 * 150 and min(ids) >= 1


def test_the_seeds_lists_page_by_skip_and_by_cursor_over_http(container):
    users = DynamoUsers(container.table)
    tags = DynamoTags(container.table)
    me = users.create(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password_hash="h", role="user", full_name=None
    )
    names = [f"t{i:02d}" for i in range(11)]
    for name in names:
        tags.create(owner_id=me.id, name=name)
    first, second, deep, bad = api_get(
        container,
        me,
        "/tags/?limit=4",
        "/tags/?skip=4&limit=4",
        "/tags/?skip=10001",
        "/tags/?cursor=x",
    )
    assert first.status_code == 200 and first.json()["total"] == 11
    assert [t["name"] for t in first.json()["tags"]] == names[:4]
    assert [t["name"] for t in second.json()["tags"]] == names[4:8]
    assert deep.status_code == 400 and deep.json()["code"] == "SKIP_TOO_DEEP"
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_CURSOR"
    got, cursor = [], None
    while True:
        (r,) = api_get(container, me, "/tags/?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        got += [t["name"] for t in r.json()["tags"]]
        cursor = r.json().get("next_cursor")
        if not cursor:
            break
    assert got == names


def test_datasets_page_newest_first_filter_and_settle_out_of_the_sweep(container):
    datasets = DynamoDatasets(container.table)
    owner = new_owner()
    made = []
    for i in range(9):
        d = Dataset(
            id=uuid.uuid4().hex,
            owner_id=owner,
            name=f"d{i}",
            key=f"datasets/{owner}/{i}.zip",
            format="yolo" if i % 3 == 0 else "coco",
            project_id=7 if i % 2 else None,
            status="uploading",
            created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        )
        datasets.create(d, deadline=time.time() + 3600)
        made.append(d.id)
    newest = list(reversed(made))
    page = datasets.page(owner_id=owner, skip=2, limit=3)
    assert [d.id for d in page.items] == newest[2:5] and page.total == 9
    rest = datasets.page(owner_id=owner, skip=0, limit=100, cursor=page.next_cursor)
    assert [d.id for d in rest.items] == newest[5:]
    yolo = datasets.page(owner_id=owner, skip=0, limit=2, fmt="yolo")
    assert [d.id for d in yolo.items] == [made[6], made[3]] and yolo.total == 3
    more = datasets.page(owner_id=owner, skip=0, limit=2, fmt="yolo", cursor=yolo.next_cursor)
    assert [d.id for d in more.items] == [made[0]] and more.next_cursor is None
    with pytest.raises(InvalidInput):  # a cursor keeps its filter
        datasets.page(owner_id=owner, skip=0, limit=2, fmt="coco", cursor=yolo.next_cursor)
    both = datasets.page(owner_id=owner, skip=0, limit=10, fmt="coco", project_id=7)
    assert {d.id for d in both.items} == {made[i] for i in (1, 5, 7)} and both.total == 3
    assert [d.id for d in datasets.list(owner_id=owner)] == newest
    # settled: out of the sweep's partition, still listed
    assert datasets.finish(made[0], {"status": "ready"})
    item = container.table.get(f"DATASET#{made[0]}", "DATASET")
    assert "GSI2PK" not in item and "GSI1PK" not in item
    assert made[0] not in {d.id for d in datasets.overdue(time.time() + 7200, limit=1000)}
    assert datasets.page(owner_id=owner, skip=8, limit=1).items[0].status == "ready"
