"""Everything settles: the reconciler, run on a schedule (EventBridge Scheduler in AWS,
the local dispatcher's timer), settles whatever overstayed the bound the operator set
(shared/settings.py, ``analysis_deadline_s``, ``training_*``, ``reconcile_*``,
``dataset_*_deadline_s``, ``evaluation_grace_s``).

Events drive the normal path; the reconciler is for what they missed: a worker killed
mid-run, a caller that died between two writes, a runner that forgot its job, a "Batch
Job State Change" that was dead-lettered. It reads only what is overdue: each analysis
and training job in flight has a deadline item (shared/adapters/dynamodb/deadlines.py),
read earliest first in bounded pages; leaderboard jobs and datasets keep their own
sparse lists (``EvaluationService.sweep``, ``DatasetService.sweep``). For each one it
asks the owner of the work first (the job runner: Batch ``DescribeJobs``, the local
runner's records) and then:

* an analysis still ``processing`` past its deadline is queued again as a new task (the
  dead run can no longer write), ``reconcile_max_retries`` times, then ``failed``;
* a training job ``queued`` with no runner job is submitted again (as many times), then
  ``failed``; one the runner says ended, or has no record of, ends with the runner's
  reason; one still going is asked about again every ``training_check_interval_s``;
* a seed 003 batch still ``processing`` past its deadline (its handler kept failing,
  its event dead-lettered) is ended ``failed`` by the inference service's own rule,
  with the results it has (:func:`batch_settler`);
* leaderboard jobs and datasets past their deadline are failed by their own services.

Every end carries its reason (the item's ``error``) and is pushed to its followers like
any other. A deadline whose handling fails stays, so the next run tries it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import CrucibleError
from shared.models import Principal
from shared.ports import Deadline, DeadlineRepository, JobRepository

if TYPE_CHECKING:
    from shared.services.inference import InferenceService

log = logging.getLogger(__name__)

Settle = Callable[[Deadline, float], str]


class Reconciler:
    def __init__(
        self,
        deadlines: DeadlineRepository,
        settle: dict[str, Settle],
        sweeps: dict[str, Callable[[float], list[str]]],
        *,
        batch_size: int,
    ) -> None:
        """``settle``: per kind of deadline, what settles one (``AudioService.reconcile``,
        ``TrainingService.reconcile``); ``sweeps``: the services that keep their own list
        of what is overdue, each called with the time and returning what it ended."""
        self.deadlines = deadlines
        self.settle = settle
        self.sweeps = sweeps
        self.batch_size = batch_size

    def run(self, now: float | None = None) -> dict[str, list[str]]:
        """One pass; returns what was done, by outcome (``retried``, ``failed``, ...)."""
        now = time.time() if now is None else now
        report: dict[str, list[str]] = {}
        for name, sweep in self.sweeps.items():
            try:
                if ended := sweep(now):
                    report[f"{name} ended"] = list(ended)
            except Exception:  # one service failing does not stop the others
                log.exception("the %s sweep failed; the next run tries again", name)
        for due in self.deadlines.due(now, limit=self.batch_size):
            settle = self.settle.get(due.kind)
            try:
                outcome = settle(due, now) if settle else "unknown kind"
            except Exception:
                log.exception("settling %s %s failed; the next run tries again", due.kind, due.ref)
                continue
            self.deadlines.drop(due)  # after any deadline its settling put in its place
            if outcome != "settled":
                report.setdefault(outcome, []).append(f"{due.kind}:{due.ref}")
        return report


def batch_settler(
    inference: InferenceService, jobs: JobRepository, deadlines: DeadlineRepository
) -> Settle:
    """Settles a seed 003 batch (a deadline ``batch``, ``<workflow id>/<batch id>``,
    written by functions/events/batch_inference.py as it takes the batch): read as its
    owner reads it, which ends it ``failed`` once past the inference service's deadline
    (``BATCH_DEADLINE``); one not yet past it is looked at again a minute later."""

    def settle(due: Deadline, now: float) -> str:
        workflow_id, _, batch_id = due.ref.partition("/")
        job = jobs.get(int(workflow_id)) if workflow_id.isdigit() else None
        if job is None:
            return "settled"
        owner = Principal(user_id=job.owner_id, role="user")
        try:
            batch = inference.batch_status(owner, workflow_id, batch_id)
        except CrucibleError:  # no such batch (an event nobody sent): nothing to settle
            return "settled"
        if batch["status"] == "processing":
            deadlines.put(due.kind, due.ref, now + 60)
            return "checked"
        return "failed" if batch.get("error") and batch["status"] == "failed" else "settled"

    return settle
