"""The training container's entrypoint package: ``python -m crucible_trainer --job-id N``.

It reads the job's spec from the table, fetches its dataset, trains, and reports
through callbacks (progress, logs, validation, checkpoints, completion, errors) into
the table — the source of truth the push path streams from — and to MLflow.
SIGTERM (a stop, or a spot reclaim) saves a last checkpoint and exits cleanly.
"""
