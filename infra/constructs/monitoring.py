"""Alarms to an SNS topic (e-mailed where the environment names an address): every
function's errors, dead-lettered events, work queues that fall behind, and the API's 5xx
responses."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.api import RestApi
from infra.constructs.events import Events
from infra.constructs.functions import Functions

# How long the oldest event in the analysis or ingest queue may wait (seconds).
QUEUE_BACKLOG_S = 3600


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env: EnvironmentConfig,
        functions: Functions,
        events: Events,
        api: RestApi,
    ) -> None:
        super().__init__(scope, id)
        key = kms.Key(self, "TopicKey", enable_key_rotation=True)
        self.topic = sns.Topic(self, "Alarms", master_key=key, enforce_ssl=True)
        if env.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(str(env.alarm_email)))
        action = actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []

        def alarm(name: str, metric: cw.IMetric, threshold: float) -> None:
            a = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            a.add_alarm_action(action)
            self.alarms.append(a)

        for fn in functions.all:
            alarm(f"{fn.node.id}Errors", fn.metric_errors(period=Duration.minutes(5)), 1)
        alarm(
            "DeadLetters",
            events.dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            1,
        )
        alarm("Api5xx", api.api.metric_server_error(period=Duration.minutes(5)), 5)
        # A queue whose oldest event waits past this has too low a cap for what arrives
        # (analysis_max_concurrency, ingest_max_concurrency in cdk.json).
        for queue in events.queues.values():
            alarm(
                f"{queue.node.id}Backlog",
                queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(5)),
                QUEUE_BACKLOG_S,
            )
