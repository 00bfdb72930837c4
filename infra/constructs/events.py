"""EventBridge rules from shared.routing.ROUTES to their handlers, the table's stream to
the push handler, and the sweeper's schedule (EventBridge Scheduler, every minute) — each
with retries and a dead-letter queue."""

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

from infra.constructs import nag
from infra.constructs.functions import Functions
from infra.constructs.refs import DataRefs
from shared.routing import ROUTES
from shared.settings import ResourceNames


class Events(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str,
        names: ResourceNames,
        functions: Functions,
        data: DataRefs,
    ) -> None:
        super().__init__(scope, id)
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=names.events_dlq,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        nag(self.dlq, "SQS3", "This queue is the dead-letter queue.")
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
            rule.add_target(
                targets.LambdaFunction(
                    functions.by_module[route.handler],
                    dead_letter_queue=self.dlq,
                    retry_attempts=4,
                    max_event_age=cdk.Duration.hours(6),
                )
            )
            self.rules[route.name] = rule
        # Async invocations that still fail land in the same dead-letter queue.
        for fn in functions.by_module.values():
            fn.configure_async_invoke(
                retry_attempts=2, on_failure=destinations.SqsDestination(self.dlq)
            )
        functions.stream_push.add_event_source(
            sources.DynamoEventSource(
                data.table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=100,
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
