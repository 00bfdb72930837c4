"""The training image's package. Two entry points:

- ``python -m crucible_trainer --job-id N`` (entrypoint.py): an AWS Batch job (or the
  local job runner's subprocess) trains one job with its framework (frameworks/),
  reporting into the table and MLflow through a :class:`crucible_trainer.run.Run`;
- ``crucible_trainer.lambda_handler.handler``: the inference Lambda, predicting with a
  job's checkpoint (predict.py).
"""
