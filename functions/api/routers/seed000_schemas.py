"""Seed 000's training request."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TrainStart(BaseModel):
    model_name: str = Field(min_length=1)
    dataset_name: str = Field(min_length=1)
