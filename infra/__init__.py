"""The CDK app: one construct per concern, composed into a stack set per environment.

Resource names come from ``shared.settings.ResourceNames``, the table's key schema
from ``shared.adapters.dynamodb.table.TABLE_SCHEMA`` and the event routes from
``shared.routing.ROUTES``, so the code, the local emulator and AWS agree.
"""
