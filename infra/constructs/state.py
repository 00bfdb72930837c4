"""The single DynamoDB table, built from the key schema the code uses."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as ddb
from constructs import Construct

from infra.config import EnvironmentConfig
from shared.adapters.dynamodb.table import TABLE_SCHEMA
from shared.settings import ResourceNames


class State(Construct):
    def __init__(
        self, scope: Construct, id: str, *, env: EnvironmentConfig, names: ResourceNames
    ) -> None:
        super().__init__(scope, id)
        s = TABLE_SCHEMA
        self.table = ddb.Table(
            self,
            "Table",
            table_name=names.table,
            partition_key=ddb.Attribute(name=s["partition_key"], type=ddb.AttributeType.STRING),
            sort_key=ddb.Attribute(name=s["sort_key"], type=ddb.AttributeType.STRING),
            billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            stream=ddb.StreamViewType[s["stream"]],
            time_to_live_attribute=s["ttl_attribute"],
            encryption=ddb.TableEncryption.AWS_MANAGED,
            deletion_protection=env.retain,
            removal_policy=cdk.RemovalPolicy.RETAIN if env.retain else cdk.RemovalPolicy.DESTROY,
        )
        for index, (pk, sk) in s["indexes"].items():
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=ddb.Attribute(name=pk, type=ddb.AttributeType.STRING),
                sort_key=ddb.Attribute(name=sk, type=ddb.AttributeType.STRING),
                projection_type=ddb.ProjectionType.ALL,
            )
