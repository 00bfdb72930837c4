"""Datasets that never settle are settled by the reconciler's sweep (against the
emulator, on a stage of their own so no other test's datasets are swept): an upload never
completed, an upload whose S3 event was lost, an ingest that died. Each ends ``failed``
with what happened, pushed to its owner, once; only datasets in flight and due are read."""

import io
import uuid

import pytest

from shared import keys
from shared.models import Principal
from shared.services.datasets import DatasetService
from tests import datasets as make

pytestmark = pytest.mark.integration

UPLOAD_S, INGEST_S = 600, 300


@pytest.fixture(scope="module")
def stage(emulator):
    from functions.local.bootstrap import ensure_resources
    from shared.settings import load_settings
    from shared.wiring import build

    c = build(load_settings(stage=f"s{uuid.uuid4().hex[:8]}", rate_limit_per_minute=0))
    ensure_resources(c)
    return c


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(stage, clock) -> DatasetService:
    return DatasetService(
        stage.dataset_repository,
        stage.uploads,
        max_bytes=10 * 2**20,
        max_direct_bytes=10 * 2**20,
        projects=stage.projects,
        push=stage.push,
        upload_deadline_s=UPLOAD_S,
        ingest_deadline_s=INGEST_S,
        clock=clock,
    )


def owner() -> Principal:
    return Principal(user_id=800_000 + uuid.uuid4().int % 100_000, role="user")


def pushed(stage, dataset_id: str) -> list:
    return stage.push.events.recent(f"dataset:{dataset_id}", limit=10)


def test_an_upload_never_completed_fails_once_and_the_owner_hears_it(stage, service, clock):
    alice = owner()
    g = service.presign(alice, name="never sent", size=1000)
    clock.now += UPLOAD_S - 1
    assert service.sweep() == []  # not due yet
    clock.now += 2
    assert service.sweep() == [g["dataset_id"]]
    d = service.get(alice, g["dataset_id"])
    assert d.status == "failed"
    assert (
        d.error
        == f"The upload was never completed within {UPLOAD_S} s of the presign; upload it again"
    )
    [event] = pushed(stage, d.id)
    assert (event.kind, event.data["status"], event.also) == (
        "error",
        "failed",
        [f"user:{alice.user_id}"],
    )
    assert d.error in event.data["message"]
    clock.now += 10 * UPLOAD_S
    assert service.sweep() == []  # idempotent: settled datasets leave the active partition
    assert len(pushed(stage, d.id)) == 1


def test_an_arrival_whose_event_was_lost_is_named_so_and_deleted(stage, service, clock):
    alice = owner()
    g = service.presign(alice, name="event lost", size=1000)
    stage.uploads.put(g["key"], make.yolo(1))  # arrived; its S3 event never reached ingest
    clock.now += UPLOAD_S + 1
    assert service.sweep() == [g["dataset_id"]]
    d = service.get(alice, g["dataset_id"])
    assert d.status == "failed" and "arrived but was not ingested within 600 s" in d.error
    assert stage.uploads.head(g["key"]) is None  # never to be read
    # the arrival's event, delivered late after all, changes nothing
    assert service.ingest(g["key"], 1000).status == "failed"


def test_an_ingest_that_died_fails_with_its_own_reason_and_leaves_nothing(stage, service, clock):
    alice = owner()
    g = service.presign(alice, name="ingest killed", size=1000)
    # the ingest began (uploading -> processing, due by its own deadline), stored its copy,
    # and was killed before it settled the dataset
    assert (
        stage.dataset_repository.start(g["dataset_id"], clock() + INGEST_S).status == "processing"
    )
    folder = keys.dataset_stored_folder(alice.user_id, g["dataset_id"])
    stage.uploads.put(keys.dataset_archive(folder), b"partial")
    clock.now += INGEST_S - 1
    assert service.sweep() == []
    clock.now += 2
    assert service.sweep() == [g["dataset_id"]]
    d = service.get(alice, g["dataset_id"])
    assert d.error == (
        f"Ingest did not finish within {INGEST_S} s (it was stopped or crashed); "
        "upload the dataset again"
    )
    assert stage.uploads.head(keys.dataset_archive(folder)) is None


def test_a_dataset_that_moved_on_is_not_failed_for_its_old_state(stage, service, clock):
    """Read ``uploading`` and due, then its ingest starts before the sweep writes: the
    sweep's write is conditional on the status it read, so the ingest wins."""
    alice = owner()
    g = service.presign(alice, name="late start", size=1000)
    clock.now += UPLOAD_S + 1
    [seen] = stage.dataset_repository.overdue(clock(), limit=10)
    assert seen.id == g["dataset_id"]
    stage.dataset_repository.start(seen.id, clock() + INGEST_S)
    assert service._fail(seen.id, "too late", None, only_from=("uploading",)) is None
    assert service.sweep() == []  # due again only at the ingest's deadline
    assert service.get(alice, seen.id).status == "processing"


def test_the_sweep_reads_only_due_datasets_in_flight(stage, service, clock):
    alice = owner()
    ready = service.upload(alice, [("d.zip", io.BytesIO(make.yolo(1)))], name="ok")
    assert ready.status == "ready"
    due = []
    for i in range(3):
        due.append(service.presign(alice, name=f"due {i}", size=10)["dataset_id"])
        clock.now += 1
    later = service.presign(alice, name="later", size=10)["dataset_id"]  # due 1 s after
    clock.now += UPLOAD_S - 1
    got = [d.id for d in stage.dataset_repository.overdue(clock(), limit=100)]
    assert got == due  # oldest deadline first; neither the later one nor the ready one
    assert [d.id for d in stage.dataset_repository.overdue(clock(), limit=2)] == due[:2]
    # everyone's list (an admin's) still shows datasets in flight, newest first
    everyone = [d.id for d in stage.dataset_repository.list(owner_id=None)]
    assert everyone.index(later) < everyone.index(due[0]) < everyone.index(ready.id)
    assert service.sweep(limit=2) == due[:2] and service.sweep() == due[2:]
    assert service.get(alice, later).status == "uploading"
