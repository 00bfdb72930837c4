"""Crucible's evaluator: runs one leaderboard submission (seed 004) in a sandbox, checks
the ``metrics.json`` it writes, and reports the outcome to the job and MLflow."""
