"""EventBridge rules from shared.routing.ROUTES to their handlers, the table's stream to
the push handler, and the sweeper's schedule (EventBridge Scheduler, every minute) — each
with retries and a dead-letter queue.

The handlers that do heavy work per upload (analysis, dataset ingest: ``QUEUED``) take
their events through an SQS queue each, read by an event source mapping with a
concurrency cap: a thousand uploads at once wait in the queue instead of taking the
account's Lambda pool from the API. The others are invoked asynchronously, each within
its reserved concurrency (``event_reserved_concurrency``, infra/constructs/functions.py);
Lambda keeps a throttled asynchronous event and retries it for up to six hours."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import QUEUED, EnvironmentConfig
from infra.constructs import nag
from infra.constructs.functions import Functions
from infra.constructs.refs import DataRefs
from shared.routing import ROUTES
from shared.settings import ResourceNames

# How many times a queued event is received before it is dead-lettered: at least five,
# as Lambda's guide for SQS sources asks, so that receives the function was throttled on
# (the account's pool exhausted) do not dead-letter an event that never ran.
WORK_RECEIVES = 5
# The table's stream to the push function (see the mapping below).
PUSH_BATCH = 100
PUSH_WINDOW_S = 1
PUSH_PARALLELISM = 4


class Events(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env: EnvironmentConfig,
        names: ResourceNames,
        functions: Functions,
        data: DataRefs,
    ) -> None:
        super().__init__(scope, id)
        stage = env.name
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=names.events_dlq,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        nag(self.dlq, "SQS3", "This queue is the dead-letter queue.")
        self.queues = {
            module: self._work_queue(stage, functions.by_module[module], getattr(env, setting))
            for module, setting in QUEUED.items()
        }
        self.rules: dict[str, events.Rule] = {}
        for route in ROUTES:
            p = route.pattern(names, cloud=True)
            rule = events.Rule(
                self,
                f"Rule-{route.name}",
                rule_name=f"crucible-{stage}-{route.name}",
                event_pattern=events.EventPattern(
                    source=p["source"], detail_type=p["detail-type"], detail=p.get("detail")
                ),
            )
            delivery = dict(
                dead_letter_queue=self.dlq, retry_attempts=4, max_event_age=cdk.Duration.hours(6)
            )
            if route.handler in self.queues:  # the message's body is the event
                rule.add_target(targets.SqsQueue(self.queues[route.handler], **delivery))
            else:
                rule.add_target(
                    targets.LambdaFunction(functions.by_module[route.handler], **delivery)
                )
            self.rules[route.name] = rule
        # Async invocations that still fail land in the same dead-letter queue.
        for module, fn in functions.by_module.items():
            if module not in self.queues:
                fn.configure_async_invoke(
                    retry_attempts=2, on_failure=destinations.SqsDestination(self.dlq)
                )
        # The stream to the push function (functions/events/stream_push.py): batches of up
        # to PUSH_BATCH records, gathered for up to PUSH_WINDOW_S (the shortest window a
        # stream mapping has) so that progress superseded within it is sent once;
        # PUSH_PARALLELISM batches of each shard at once (a topic's events stay in order:
        # they share a partition key). The function stops sending MARGIN_S before its
        # timeout and reports what it did not finish as batch item failures, which are
        # handed over again (its followers served are not served twice) up to three times.
        functions.stream_push.add_event_source(
            sources.DynamoEventSource(
                data.table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=PUSH_BATCH,
                max_batching_window=cdk.Duration.seconds(PUSH_WINDOW_S),
                parallelization_factor=PUSH_PARALLELISM,
                bisect_batch_on_error=True,
                retry_attempts=3,
                report_batch_item_failures=True,
                max_record_age=cdk.Duration.hours(1),
                on_failure=sources.SqsDlq(self.dlq),
                filters=[
                    lambda_.FilterCriteria.filter(
                        {
                            "eventName": lambda_.FilterRule.is_equal("INSERT"),
                            "dynamodb": {
                                "NewImage": {"type": {"S": lambda_.FilterRule.is_equal("event")}}
                            },
                        }
                    )
                ],
            )
        )
        self.sweep = self._sweep(stage, functions)

    def _work_queue(self, stage: str, fn: lambda_.Function, cap: int) -> sqs.Queue:
        """``fn``'s queue and its reader: one message per invocation (an analysis or an
        ingest may take minutes, and each message succeeds or fails on its own), at most
        ``cap`` invocations at once. A message is hidden for six times the function's
        timeout while one is at work on it (Lambda's guidance for SQS sources, so that
        retries of a throttled read never hand it to a second invocation), and after
        ``WORK_RECEIVES`` failed tries it moves to the dead-letter queue, whose alarm
        rings; the reconciler settles the file or dataset it was about meanwhile."""
        short = fn.node.id.lower()
        timeout = fn.timeout.to_seconds() if fn.timeout else 3
        queue = sqs.Queue(
            self,
            f"{fn.node.id}Queue",
            queue_name=f"crucible-{stage}-{short}",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(6 * timeout),
            # shorter than the dead-letter queue's, which counts from the first send
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=WORK_RECEIVES),
        )
        fn.add_event_source(
            sources.SqsEventSource(
                queue, batch_size=1, max_concurrency=cap, report_batch_item_failures=True
            )
        )
        return queue

    def _sweep(self, stage: str, functions: Functions) -> scheduler.Schedule:
        """The sweeper every minute. Scheduler assumes a role of its own that may invoke
        the sweeper and send what it cannot deliver to the dead-letter queue, nothing else,
        and only on this schedule's behalf. A tick it cannot deliver is retried for a few
        minutes (the next tick does the same work); a sweep that fails is not retried (the
        next minute's is the retry) but dead-lettered, so a broken sweeper raises the
        dead-letter alarm as well as its own errors alarm."""
        stack = cdk.Stack.of(self)
        name = f"crucible-{stage}-sweeper"
        arn = stack.format_arn(
            service="scheduler", resource="schedule", resource_name=f"default/{name}"
        )
        role = iam.Role(
            self,
            "SweepRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account, "aws:SourceArn": arn}
                },
            ),
        )
        sweeper = functions.sweeper
        sweeper.configure_async_invoke(
            retry_attempts=0, on_failure=destinations.SqsDestination(self.dlq)
        )
        schedule = scheduler.Schedule(
            self,
            "Sweep",
            schedule_name=name,
            description="Settles what overstayed its bound (functions/events/reconciler.py)",
            schedule=scheduler.ScheduleExpression.rate(cdk.Duration.minutes(1)),
            target=scheduler_targets.LambdaInvoke(
                sweeper,
                role=role,
                dead_letter_queue=self.dlq,
                retry_attempts=3,
                max_event_age=cdk.Duration.minutes(5),
            ),
        )
        fn = stack.get_logical_id(sweeper.node.default_child)
        nag(
            role,
            f"IAM5[Resource::<{fn}.Arn>:*]",
            "grant_invoke covers the sweeper's versions and aliases; the role invokes nothing else.",
        )
        return schedule
