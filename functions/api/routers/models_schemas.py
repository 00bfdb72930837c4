"""Seed 003's model catalogue shapes (``/models``, ``/models/{model_id}``) and the internal
``/internal/models/prepare``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.catalogue import NOTHING_DOWNLOADED, seed003_tasks


class ModelOut(BaseModel):
    model_id: str = Field(description="The name a workflow, a chat or a training job uses")
    name: str
    framework: str
    task_types: list[str] = Field(description="In seed 003's words: classification, detection")
    parameters: str | None = Field(description="Parameter count, e.g. 25.6M (None: varies)")
    parameter_count: int | None = Field(
        description="Exact, with the framework's default head (timm: counted at build time)"
    )
    pretrained_weights: list[str] = Field(description=NOTHING_DOWNLOADED)
    description: str
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Published benchmark results, where the catalogue records them (none yet)",
    )

    @classmethod
    def of(cls, rec: dict[str, Any]) -> ModelOut:
        return cls(**{**_common(rec)})


class ModelListOut(BaseModel):
    models: list[ModelOut]
    total: int
    page: int
    limit: int
    has_next: bool


class ModelDetailOut(ModelOut):
    input_size: list[int] | None = Field(
        description="Default input: [height, width, channels] (None: audio)"
    )
    fixed_input_size: bool = Field(description="True: the architecture takes only input_size")
    supported_backends: list[str]
    training_task_types: list[str] = Field(
        description="The task types in training jobs' words (seed 002's /training/jobs)"
    )
    weights: str = NOTHING_DOWNLOADED
    license: str | None
    family: str | None = Field(description="timm: the module it comes from")
    example_usage: str
    documentation_url: str

    @classmethod
    def of(cls, rec: dict[str, Any], example_usage: str = "") -> ModelDetailOut:
        return cls(
            **_common(rec),
            input_size=rec["input_size"],
            fixed_input_size=rec["fixed_input_size"],
            supported_backends=["pytorch"],
            training_task_types=list(rec["task_types"]),
            license=rec["license"],
            family=rec["family"],
            example_usage=example_usage,
            documentation_url=rec["documentation_url"],
        )


def _common(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_id": rec["model_id"],
        "name": rec["name"],
        "framework": rec["framework"],
        "task_types": seed003_tasks(rec["task_types"]),
        "parameters": rec["parameters"],
        "parameter_count": rec["parameter_count"],
        "pretrained_weights": rec["pretrained_weights"],
        "description": rec["description"],
    }


class PrepareIn(BaseModel):
    """Seed 003's internal request: which model a workflow is about to train."""

    model_name: str = Field(min_length=1, max_length=200)
    task_type: str | None = Field(default=None, max_length=50)
    config: dict = Field(
        default_factory=dict,
        description="The training config; only weights (or advanced_config.weights), a "
        "file name in the operator's weights directory, is read",
    )


class RequestedWeights(BaseModel):
    file: str
    available: bool


class WeightsOut(BaseModel):
    directory_configured: bool = Field(
        description="Whether this process has an operator weights directory (CRUCIBLE_WEIGHTS_DIR)"
    )
    files: list[str] = Field(description="Weights files there named for this model")
    requested: RequestedWeights | None = None


class PrepareOut(BaseModel):
    model_name: str = Field(description="The catalogue's spelling of the model asked for")
    model_id: str
    framework: str
    task_type: str = Field(description="In seed 003's words")
    training_task_type: str = Field(description="In training jobs' words")
    status: str = Field(
        description="ready; weights_unavailable (the requested file is not in the weights "
        "directory); weights_unverified (no weights directory configured in this process: "
        "the trainer checks when the job starts)"
    )
    downloaded: bool = Field(False, description="Always false: nothing is ever fetched")
    input_size: list[int] | None
    fixed_input_size: bool
    parameters: str | None
    parameter_count: int | None
    weights: WeightsOut
    message: str
