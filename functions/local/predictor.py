"""The local stack's predictor: what the inference Lambda runs
(:func:`crucible_trainer.predict.predict`), in this process. torch is imported on the
first prediction and models stay cached; requests and answers go through JSON as they
would to Lambda."""

from __future__ import annotations

import json
import sys
from typing import Any

from shared.ports import ObjectStore


class InProcessPredictor:
    def __init__(self, artifacts: ObjectStore, trainer_path: str) -> None:
        self.artifacts = artifacts
        self.trainer_path = trainer_path  # where crucible_trainer is (the image's /app)

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.trainer_path not in sys.path:
            sys.path.insert(0, self.trainer_path)
        from crucible_trainer.predict import predict

        answer = predict(json.loads(json.dumps(request)), self.artifacts)
        return json.loads(json.dumps(answer))
