"""What a submission leaves behind: ``<output>/metrics.json``, read without trusting it.

Seed 004's contract: ``{"params": {...}, "metrics": {...}}``. ``params`` (optional) maps
names to strings, numbers or booleans (at most MAX_ENTRIES, MAX_PARAMS_BYTES as JSON in
all); ``metrics`` maps names to finite numbers and holds at least one (at most
MAX_ENTRIES). Names are what MLflow accepts, in their normal form (no empty, ``.`` or
``..`` segment, no trailing ``/``) and with at least one letter or digit. Numbers are what
the leaderboard (DynamoDB) can store: 0 or a magnitude from 1e-130 to below 1e126, and
integers of at most 38 digits. The file is read only if it is a regular file (never
through a link: the submission could point it at any file of the worker's) of at most
MAX_BYTES. Every refusal is an ``InvalidMetrics`` that says what to fix.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import Any

FILE = "metrics.json"
MAX_BYTES = 1024 * 1024
MAX_ENTRIES = 100  # params, and metrics
MAX_NAME = 250  # MLflow's longest param key and metric name
MAX_VALUE = 500  # a param's value, as a string
MAX_PARAMS_BYTES = 8 * 1024  # all params, as JSON (UTF-8)
# What DynamoDB stores of a number: a magnitude in [1e-130, 1e126) (or 0), 38 digits.
MIN_MAGNITUDE, MAX_MAGNITUDE, MAX_DIGITS = 1e-130, 1e126, 38
# What MLflow accepts in a name: letters, digits, '_', '-', '.', ' ', ':' and '/'.
_NAME = re.compile(r"[A-Za-z0-9_\-. :/]+")

Params = dict[str, str | int | float | bool]
Metrics = dict[str, float]


class InvalidMetrics(ValueError):
    """metrics.json is missing or does not follow the contract."""


def read_metrics(out_dir: Path) -> tuple[Params, Metrics]:
    """The params and metrics the submission wrote into ``out_dir``."""
    return validate(parse(_read(out_dir / FILE)))


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidMetrics(
            f"The submission wrote no {FILE} into its output directory (the --output argument)"
        ) from None
    except OSError as exc:
        if path.is_symlink():
            raise InvalidMetrics(f"{FILE} is a symbolic link: write a regular file") from None
        raise InvalidMetrics(f"{FILE} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidMetrics(f"{FILE} is not a regular file")
        data = b""
        while len(data) <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise InvalidMetrics(f"{FILE} is larger than {MAX_BYTES // 1024} KiB")
    return data


def parse(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMetrics(f"{FILE} is not UTF-8 text") from None
    except RecursionError:
        raise InvalidMetrics(f"{FILE} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidMetrics(f"{FILE} is not valid JSON: {exc}") from None


def validate(doc: object) -> tuple[Params, Metrics]:
    """The contract, checked; metrics as floats."""
    if not isinstance(doc, dict):
        raise InvalidMetrics(
            f'{FILE} must be a JSON object: {{"params": {{...}}, "metrics": {{...}}}}'
        )
    unknown = sorted(set(doc) - {"params", "metrics"})
    if unknown:
        raise InvalidMetrics(
            f'{FILE} has unknown keys {", ".join(map(json.dumps, unknown[:5]))}: only "params" '
            'and "metrics" are read'
        )
    if "metrics" not in doc:
        raise InvalidMetrics(f'{FILE} has no "metrics" object')
    params_doc, metrics_doc = doc.get("params", {}), doc["metrics"]
    for key, value in (("params", params_doc), ("metrics", metrics_doc)):
        if not isinstance(value, dict):
            raise InvalidMetrics(f'"{key}" in {FILE} must be an object, not {_kind(value)}')
        if len(value) > MAX_ENTRIES:
            raise InvalidMetrics(
                f'"{key}" in {FILE} has {len(value)} entries: at most {MAX_ENTRIES}'
            )
        for name in value:
            _check_name(key, name)
    if not metrics_doc:
        raise InvalidMetrics(f'"metrics" in {FILE} is empty: report at least one metric')
    params: Params = {}
    for name, value in params_doc.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidMetrics(f'param "{name}" is {value}: a number param must be finite')
        if not isinstance(value, str | int | float | bool):
            raise InvalidMetrics(
                f'param "{name}" is {_kind(value)}: params are strings, numbers or booleans'
            )
        if not isinstance(value, str | bool):
            _check_storable("param", name, value)
        if len(str(value)) > MAX_VALUE:
            raise InvalidMetrics(f'param "{name}" is longer than {MAX_VALUE} characters')
        params[name] = value
    encoded = len(json.dumps(params, ensure_ascii=False).encode("utf-8"))
    if encoded > MAX_PARAMS_BYTES:
        raise InvalidMetrics(
            f'"params" in {FILE} take {encoded} bytes as JSON: at most '
            f"{MAX_PARAMS_BYTES // 1024} KiB in all"
        )
    metrics: Metrics = {}
    for name, value in metrics_doc.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidMetrics(f'metric "{name}" is {_kind(value)}: metrics are numbers')
        if isinstance(value, int):
            _check_storable("metric", name, value)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise InvalidMetrics(
                f'metric "{name}" is {str(value)[:40]}: metrics must be finite numbers'
            )
        _check_storable("metric", name, number)
        metrics[name] = number
    return params, metrics


def _check_storable(what: str, name: str, value: int | float) -> None:
    """A number the leaderboard (DynamoDB) can store as it is."""
    if isinstance(value, int):
        digits = len(str(abs(value)))
        if digits > MAX_DIGITS:
            raise InvalidMetrics(
                f'{what} "{name}" is {str(value)[:40]}... ({digits} digits): integers may have '
                f"at most {MAX_DIGITS} digits"
            )
        return
    if value != 0 and math.isfinite(value) and not MIN_MAGNITUDE <= abs(value) < MAX_MAGNITUDE:
        raise InvalidMetrics(
            f'{what} "{name}" is {value:g}: numbers must be 0 or of a magnitude from 1e-130 to '
            "below 1e126"
        )


def _check_name(key: str, name: str) -> None:
    what = "param" if key == "params" else "metric"
    shown = json.dumps(name[:60])
    if len(name) > MAX_NAME:
        raise InvalidMetrics(f"{what} name {shown}... is longer than {MAX_NAME} characters")
    if not _NAME.fullmatch(name) or name.startswith("/") or ".." in name.split("/"):
        raise InvalidMetrics(
            f"{what} name {shown} is not allowed: use letters, digits, '_', '-', '.', ' ', ':' "
            "and '/' (MLflow's rule)"
        )
    if posixpath.normpath(name) != name or name in (".", ".."):
        raise InvalidMetrics(
            f"{what} name {shown} is not allowed: no empty, '.' or '..' part and no '/' at "
            "its end (MLflow keeps names as paths)"
        )
    if not any(c.isalnum() for c in name):
        raise InvalidMetrics(f"{what} name {shown} is not allowed: it needs a letter or a digit")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
