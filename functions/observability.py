"""Observability shared by every Lambda: one Powertools ``Logger`` per process.

Each function is named by its ``POWERTOOLS_SERVICE_NAME`` (set per function by the CDK
app), so its logs say which function wrote them; "crucible" when unset (tests, the local
stack). Tracing is the Lambda runtime's (active X-Ray); no code emits metrics yet, so
neither Tracer nor Metrics is built: each costs cold-start time only where it is used.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "crucible")
