"""Operator commands for a running stack (local or AWS, by the usual AWS environment).

    .venv/bin/python -m functions.local.admin promote alice@example.com --role researcher
    .venv/bin/python -m functions.local.admin promote ci-bot --token --role researcher
    .venv/bin/python -m functions.local.admin replay-dlq

Self-registration gives ``user`` (``CRUCIBLE_SELF_REGISTER_ROLES``) and never ``admin``;
this (or an existing admin's ``PUT /api/v1/users/{id}/role``) is how roles are granted,
and how the first admin is made. ``--token`` names a static API token's service user
(``API_TOKENS`` ``name=token``; it exists once the token has been used). ``replay-dlq``
hands the events in the stage's dead-letter queue to their handlers again and prints how
many were replayed, dropped (nothing to replay) or failed again (kept for later).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from functions.local.server import local_environment
from shared.settings import load_settings
from shared.wiring import build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m functions.local.admin", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--data-dir", default=os.environ.get("CRUCIBLE_DATA_DIR", ".crucible"))
    ap.add_argument(
        "--endpoint",
        help="AWS endpoint: this one, else $AWS_ENDPOINT_URL, else the local emulator on :4566",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    promote = sub.add_parser("promote", help="give a user a role")
    promote.add_argument("who", metavar="email", help="the user's e-mail (or token name)")
    promote.add_argument(
        "--token", action="store_true", help="WHO is the name of an API token's service user"
    )
    promote.add_argument("--role", choices=["user", "researcher", "admin"], default="admin")
    sub.add_parser(
        "replay-dlq",
        help="hand the dead-letter queue's events to their handlers again (idempotent)",
    )
    args = ap.parse_args(argv)

    if args.endpoint:  # named on the command line: it wins over the environment's
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    local_environment(Path(args.data_dir).resolve(), endpoint)
    if args.command == "replay-dlq":
        from functions.events.reconciler import replay_dead_letters

        print(json.dumps(replay_dead_letters(build(load_settings()))))
        return 0
    users = build(load_settings()).auth.users
    user = users.get_by_token_name(args.who) if args.token else users.get_by_email(args.who)
    if user is None:
        what = "API token user named" if args.token else "user with e-mail"
        print(f"no {what} {args.who}", file=sys.stderr)
        return 1
    user = users.set_role(user.id, args.role)
    print(f"user {user.id} <{user.email}> is now {user.role}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
