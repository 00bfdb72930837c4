"""Ports: what services need from the outside world.

Storage, state and events have one adapter each (boto3, in shared/adapters/), which
serves the local stack too, through the embedded emulator. Where the local stack
cannot use the AWS service, a port has a second adapter: the job runner (AWS Batch, or
a local subprocess), the predictor (the inference Lambda, or in-process) and the
notifier (API Gateway's ``@connections``, or the dev server's own WebSocket hub). The
choice is made in shared/wiring.py and nowhere else; a local composition root
(functions/local/) only hands it what it alone can build.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from shared.events import ProgressEvent
from shared.models import (
    AudioFile,
    Connection,
    Dataset,
    Evaluation,
    Page,
    Project,
    Submission,
    Subscription,
    Tag,
    TrainingJob,
    UploadIntent,
    User,
)
from shared.settings import ResourceClass

if TYPE_CHECKING:  # annotations only: the chat's domain loads where the chat runs
    from shared.intent import ChatMessage, ChatSession, ParseContext, Parsed

Item = TypeVar("Item")


class CursorPage(Page[Item], Generic[Item]):
    """A page of a listing: the listing's ``total``, the page's ``items``, and
    ``next_cursor``, which reads on from this page (None on the last one). Listings take
    an offset (``skip``, walked key by key up to a bounded depth) or a cursor."""

    next_cursor: str | None = None


class UserRepository(Protocol):
    def create(self, *, email: str, password_hash: str, role: str, full_name: str | None) -> User:
        """Create a user; raises Conflict when the e-mail is taken."""

    def create_token_user(
        self, name: str, *, email: str, password_hash: str, role: str, full_name: str | None
    ) -> User | None:
        """Create API token ``name``'s service user under a lock of its own (never an e-mail
        lock, so no registration can claim it); None when the token already has one."""

    def bind_token_user(self, name: str, user_id: int) -> bool:
        """Make an existing user token ``name``'s service user; False when it has one."""

    def get_by_token_name(self, name: str) -> User | None: ...
    def get(self, user_id: int) -> User | None: ...
    def current(self, user_id: int) -> User | None:
        """The user as stored, read at most a few seconds ago (what each request checks)."""

    def recent(self, user_id: int) -> tuple[bool, User | None]:
        """``current`` without a read: ``(False, None)`` when none was made recently."""

    def get_by_email(self, email: str) -> User | None: ...
    def list(self, *, skip: int, limit: int, cursor: str | None = None) -> CursorPage[User]: ...
    def set_role(self, user_id: int, role: str) -> User: ...


class ProjectRepository(Protocol):
    def create(self, *, owner_id: int, name: str, description: str | None) -> Project: ...
    def get(self, project_id: int) -> Project | None: ...
    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[Project]:
        """Projects of one owner, or of everyone when ``owner_id`` is None."""


class TagRepository(Protocol):
    def create(self, *, owner_id: int, name: str) -> Tag:
        """Create a tag; raises Conflict when the owner already has one of that name."""

    def get(self, tag_id: int) -> Tag | None: ...
    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[Tag]: ...
    def delete(self, tag: Tag) -> None: ...


class ConnectionRegistry(Protocol):
    """WebSocket connections and their topic subscriptions, expiring by TTL."""

    def add(self, connection: Connection) -> None: ...
    def get(self, connection_id: str) -> Connection | None: ...
    def subscribe(self, subscription: Subscription) -> None: ...
    def subscribers(self, topic: str) -> Iterator[Subscription]:
        """A topic's live subscriptions, read a page at a time as they are consumed."""

    def topics(self, connection_id: str, *, limit: int) -> list[str]:
        """Up to ``limit`` of the topics a connection follows."""

    def of_user(self, user_id: int, *, limit: int) -> list[Connection]:
        """Up to ``limit`` of a user's registered connections, newest first."""

    def remove(self, connection_id: str) -> None:
        """Forget a connection and all its subscriptions (idempotent)."""


class EventLog(Protocol):
    def append(self, event: ProgressEvent, *, while_job_open: int | None = None) -> bool:
        """Store an event; False when an event with the same id already exists, or, with
        ``while_job_open``, when that training job has ended (checked in the same write:
        news computed before an end is never stored after it)."""

    def inserted(self, record: dict[str, Any]) -> ProgressEvent | None:
        """The event a change-stream record of the log inserted, if it inserted one."""

    def recent(self, topic: str, *, limit: int) -> list[ProgressEvent]: ...

    def claim(self, event_id: str, part: int) -> set[str] | None:
        """Take one part of an event's followers for sending, atomically: None when
        another run has it; else the connections of the part already served by an
        earlier run that gave it back (``release``)."""

    def release(self, event_id: str, part: int, sent: set[str]) -> None:
        """Give a claimed part back unfinished, ``sent`` being all it has served."""


class DeliveryDeferred(Exception):
    """A notifier could not deliver now (throttled, or the channel failing after its
    own retries): the message may be sent again later."""


class Notifier(Protocol):
    def post(self, connection_id: str, message: dict[str, Any]) -> bool:
        """Send one message; False when the connection is gone; DeliveryDeferred when
        it cannot be sent now."""

    def close(self, connection_id: str) -> None:
        """Close a connection (its user may no longer follow what it follows)."""

    def alive(self, connection_id: str) -> bool:
        """Whether the connection is still open (False: gone, its registration stale)."""


class OwnerLookup(Protocol):
    def owner_of(self, kind: str, resource_id: str) -> int | None:
        """The owner of a resource a topic names (``job``, ``file``, ...), None if unknown."""


class ObjectStore(Protocol):
    def put(self, key: str, body: bytes, *, content_type: str | None = None) -> None: ...
    def get(self, key: str) -> bytes: ...
    def head(self, key: str) -> dict[str, Any] | None:
        """``{"size", "etag", "metadata"}`` of the current version, None if there is none."""

    def download(self, key: str, path: str) -> None: ...
    def upload(self, key: str, path: str) -> None: ...
    def etag(self, key: str) -> str:
        """The object's current ETag (changes whenever it is replaced)."""

    def stream(self, key: str, chunk: int = ...) -> Iterator[bytes]: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None:
        """Erase the object: every version and delete marker, not only the current one."""

    def delete_prefix(self, prefix: str) -> None:
        """Erase every version of every object under ``prefix``."""

    def exists(self, key: str) -> bool: ...
    def keys(self, prefix: str) -> Iterable[str]: ...
    # direct transfers between clients and the store
    def presign_get(self, key: str, *, filename: str | None = None, expires: int = ...) -> str: ...
    def presign_post(
        self, key: str, *, max_bytes: int, content_type: str | None, expires: int
    ) -> dict: ...
    def start_multipart(
        self,
        key: str,
        *,
        part_sizes: list[int],
        content_type: str | None,
        expires: int,
        metadata: dict[str, str] | None = None,
    ) -> dict:
        """One URL per part, each signed for its exact size; ``metadata`` lands on the object."""

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict]) -> None:
        """Raises InvalidInput when the parts do not make the object."""


class AudioFileRepository(Protocol):
    """Audio files and the forward-only analysis state machine kept on them."""

    def next_id(self) -> int: ...
    def next_result_id(self) -> int: ...
    def create(self, f: AudioFile) -> bool: ...
    def get(self, file_id: int) -> AudioFile | None: ...
    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[AudioFile]: ...
    def update(self, file_id: int, fields: dict[str, Any]) -> AudioFile | None: ...
    def delete(self, file_id: int) -> None: ...
    def request(
        self, file_id: int, task_id: str, lease_s: int, *, first_only: bool
    ) -> AudioFile | None: ...
    def start_run(self, file_id: int, task_id: str, lease_s: int) -> bool: ...
    def retry(
        self, file_id: int, task_id: str, new_task_id: str, lease_s: int, message: str
    ) -> AudioFile | None: ...
    def progress(self, file_id: int, task_id: str, pct: int, message: str) -> bool: ...
    def finish(self, file_id: int, task_id: str, fields: dict[str, Any]) -> AudioFile | None: ...
    def put_intent(self, intent: UploadIntent, ttl_s: int) -> None: ...
    def intent(self, file_id: int) -> UploadIntent | None: ...
    def drop_intent(self, file_id: int) -> None: ...


class RateLimiter(Protocol):
    def hit(
        self, key: str, *, limit: int, window_s: int, n: int = 1, window: int | None = None
    ) -> tuple[int, int]:
        """Count ``n`` requests in the current window (or in ``window``, its number:
        epoch // ``window_s``); returns (requests in it, its reset epoch)."""

    def count(self, key: str, *, window_s: int) -> tuple[int, int]:
        """The same, without counting one."""


class UsageKeys(Protocol):
    """Each user's key into their plan's API Gateway usage plan (the REST API's
    per-client throttle and quota on the routes that start work)."""

    def key_for(self, user_id: int, plan: str) -> str:
        """The value of ``user_id``'s key, created on first use, and in ``plan``'s usage
        plan and no other (moved when the plan changed). Safe to call concurrently."""


class EventBus(Protocol):
    def put_event(self, detail_type: str, detail: dict[str, Any], *, source: str = ...) -> None: ...


class JobRunner(Protocol):
    """Runs a container entrypoint for a job id: AWS Batch, or a local subprocess that
    reports the same "Batch Job State Change" events."""

    def submit(
        self,
        job_id: str,
        *,
        job_type: str,
        queue: str,
        limits: ResourceClass | None = None,
        attempt: int | None = None,
        owner: int | None = None,
    ) -> str:
        """Start the job; returns the runner's own job id. ``limits``: the time, memory
        and CPU the job gets (Batch enforces them; locally the job enforces its own).
        ``attempt`` rides on the runner job's parameters, so its state changes name it.
        ``owner``: the user whose fair share of the queue the job runs under."""

    def terminate(self, runner_job_id: str, reason: str) -> None:
        """Ask the job to stop (SIGTERM, then SIGKILL after a grace period)."""

    def describe(self, runner_job_ids: list[str]) -> dict[str, RunnerState]:
        """What the runner knows of each job now (Batch ``DescribeJobs``; locally its
        records on disk). An id the runner has no record of is absent from the answer."""


class RunnerState(NamedTuple):
    """A runner job's state as the runner reports it: a Batch status (SUBMITTED ...
    RUNNING, SUCCEEDED, FAILED) and, once it ended, the runner's reason."""

    status: str
    reason: str | None = None


class Deadline(NamedTuple):
    """A thing in flight and when it is overdue: ``kind`` (analysis, training),
    ``ref`` (its id), ``at`` (epoch seconds) and what the reconciler needs besides."""

    kind: str
    ref: str
    at: float
    data: dict[str, Any]


class DeadlineRepository(Protocol):
    """Deadlines of things in flight, read by the reconciler in the order they fall due
    (shared/services/reconciler.py) without scanning what has settled."""

    def put(self, kind: str, ref: str, at: float, **data: Any) -> Deadline: ...
    def due(self, now: float, *, limit: int) -> list[Deadline]:
        """The deadlines at or before ``now``, earliest first, at most ``limit``."""

    def drop(self, deadline: Deadline) -> None: ...


class Predictor(Protocol):
    """Runs a job's checkpoint on one input where torch lives: the inference Lambda (the
    trainer image), or in-process locally. The request holds ``checkpoint`` (an artifacts
    key), ``data`` (base64), ``filename`` and ``options``; the answer is the prediction, or
    ``{"error": {"detail": ...}}`` for an input the model cannot take."""

    def predict(self, request: dict[str, Any]) -> dict[str, Any]: ...


class ExperimentTracker(Protocol):
    """Where a training run's metrics go besides the table: MLflow (the ``mlflow`` module,
    inside an active run)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


class JobRepository(Protocol):
    """Training jobs; ``transition`` changes status only from ``allowed_from``. A job can
    hold slots of its owner's active-job counters (``acquire``: counter -> cap, None for
    no cap): taken in the same write that stores or moves it, or not at all."""

    def create(
        self, job: TrainingJob, *, acquire: Mapping[str, int | None] | None = None
    ) -> TrainingJob | None:
        """Store a new job under the next id; None when a counter is at its cap."""

    def get(self, job_id: int) -> TrainingJob | None: ...
    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[TrainingJob]: ...
    def update(self, job_id: int, fields: dict[str, Any]) -> TrainingJob | None: ...
    def transition(
        self,
        job_id: int,
        to: str,
        allowed_from: frozenset[str],
        fields: dict[str, Any] | None = None,
        *,
        acquire: Mapping[str, int | None] | None = None,
        release: bool = False,
        remove: tuple[str, ...] = (),
    ) -> TrainingJob | None:
        """``release`` gives the job's slots back in the same write (once: they are gone)."""

    def set_runner(self, job_id: int, attempt: int, runner_job_id: str) -> TrainingJob | None:
        """Record submission ``attempt``'s runner job; None when another one was recorded
        or the job moved on to a later attempt."""

    def claim_attempt(self, job_id: int, attempt: int, status: str) -> TrainingJob | None:
        """Move a job ``status`` without a runner job from ``attempt`` to the next."""

    def active(self, owner_id: int) -> dict[str, int]:
        """The owner's active-job counters."""


class JobRecordRepository(Protocol):
    """What a running job reports: one metric row per epoch, and log lines."""

    def put_metrics(self, job_id: int, epoch: int, row: dict[str, Any]) -> None: ...
    def metrics(self, job_id: int, limit: int = ...) -> list[dict[str, Any]]: ...
    def put_log(
        self, job_id: int, n: int, level: str, message: str, log_type: str = ...
    ) -> None: ...
    def logs(self, job_id: int, limit: int = ...) -> list[dict[str, Any]]: ...


class DatasetRepository(Protocol):
    """Datasets; ``finish`` records an ingestion once (only while uploading or processing)."""

    def create(self, d: Dataset, *, deadline: float | None = None) -> None:
        """Store a new dataset; one in flight is due to settle by ``deadline`` (epoch s)."""

    def get(self, dataset_id: str) -> Dataset | None: ...
    def list(self, *, owner_id: int) -> list[Dataset]:
        """One owner's, newest first (all of them: what a plan's quota keeps few)."""

    def page(
        self,
        *,
        owner_id: int | None,
        skip: int,
        limit: int,
        cursor: str | None = None,
        project_id: int | None = None,
        fmt: str | None = None,
    ) -> CursorPage[Dataset]:
        """A page of one owner's, or everyone's when ``owner_id`` is None, newest first;
        only those of ``project_id`` or of format ``fmt`` when given."""

    def start(self, dataset_id: str, deadline: float) -> Dataset | None:
        """uploading -> processing, due by ``deadline``; None if it was not uploading."""

    def finish(
        self, dataset_id: str, fields: dict[str, Any], *, only_from: tuple[str, ...] = ...
    ) -> Dataset | None:
        """Settle it once (only from uploading/processing, or ``only_from``); else None."""

    def overdue(self, now: float, *, limit: int) -> list[Dataset]:
        """In flight past their deadline at ``now``, oldest first: a bounded query."""


class SubmissionRepository(Protocol):
    """Seed 004's submissions, and each user's rolling window of them."""

    def create(self, submission: Submission, *, per_window: int, window_s: int) -> float | None:
        """Store a new submission if its owner made fewer than ``per_window`` in the last
        ``window_s`` seconds (counted in the same write); else store nothing and return
        when the oldest of those leaves the window (epoch seconds)."""

    def recent(self, owner_id: int, *, window_s: int) -> list[float]:
        """When the owner's submissions of the last ``window_s`` seconds were made."""

    def get(self, submission_id: str) -> Submission | None: ...


class EvaluationRepository(Protocol):
    """Seed 004's jobs. Each holds a slot of its owner's ``evaluations`` counter from
    creation until it ends; ``transition`` changes status only from ``allowed_from``."""

    def create(self, job: Evaluation, *, cap: int) -> bool:
        """Store a new job holding a slot; False when the owner has ``cap`` active."""

    def get(self, job_id: str) -> Evaluation | None: ...
    def list(self, owner_id: int, *, limit: int) -> list[Evaluation]:
        """The owner's jobs, newest first."""

    def active(self) -> list[Evaluation]:
        """Every job not yet ended (what the sweeper looks at)."""

    def update(self, job_id: str, fields: Mapping[str, Any]) -> Evaluation | None:
        """Set fields of a job that has not ended; None when it has (or is gone)."""

    def transition(
        self,
        job_id: str,
        to: str,
        allowed_from: frozenset[str],
        fields: Mapping[str, Any] | None = None,
    ) -> Evaluation | None:
        """Move the job; a move into an end state gives its slot back in the same write."""


class LeaderboardRepository(Protocol):
    """The completed jobs of each leaderboard, with what they measured."""

    def put(self, board: str, entry: Mapping[str, Any]) -> None:
        """Add (or rewrite, for a replay) the entry of ``entry["job_id"]``."""

    def entries(self, board: str) -> list[dict[str, Any]]: ...


class ImageFetcher(Protocol):
    """Fetches an image a client names by URL (seed 003's ``image_url``), safely: https
    only, public addresses only (checked after DNS, and connected to as checked), bounded
    in time and size. Refusals raise InvalidInput (``URL_NOT_ALLOWED``, ``URL_FETCH_FAILED``,
    ``URL_FETCH_TIMEOUT``, ``NOT_AN_IMAGE``) or TooLarge."""

    def check(self, url: str) -> None:
        """Refuse, without fetching, a URL that may not be fetched: its form, and every
        address its host resolves to now."""

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body at ``url`` (at most ``max_bytes``), its redirects each checked anew."""


# Seed 003's chat (its domain: shared/intent.py), imported here to keep this an append.


class IntentParser(Protocol):
    """Reads what one chat message asks for: by rules (``shared.intent.RulesParser``,
    offline), or with Amazon Bedrock (shared/adapters/bedrock.py), which falls back to the
    rules on any error. Models and datasets resolve only against the catalogue and
    ``context.datasets`` (the caller's own)."""

    def parse(self, text: str, context: ParseContext) -> Parsed: ...


class ChatSessionRepository(Protocol):
    """Chat sessions and their messages; every write is conditional on the version read."""

    def create(self, session: ChatSession, messages: list[ChatMessage]) -> ChatSession | None:
        """Store a new session with its first messages; None if the id is taken."""

    def get(self, session_id: str) -> ChatSession | None: ...
    def messages(self, session_id: str) -> list[ChatMessage]:
        """The session's messages, oldest first."""

    def save(
        self, session: ChatSession, messages: list[ChatMessage], *, expected_version: int
    ) -> ChatSession | None:
        """Write the session and append messages if it is still at ``expected_version``;
        None when another write got there first (or it is being deleted)."""

    def delete(self, session_id: str) -> None:
        """Delete the session and its messages (idempotent)."""
