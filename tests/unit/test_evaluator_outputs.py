"""metrics.json, as the evaluator reads it: the seed's contract checked, every refusal
naming what to fix, and the file read without trusting it (no links, no FIFOs, a size cap)."""

from __future__ import annotations

import json
import os

import pytest
from crucible_evaluator.outputs import MAX_BYTES, InvalidMetrics, read_metrics, validate

SEED_EXAMPLE = {
    "params": {"method": "padim", "dataset": "mvtec_ad", "backbone": "resnet18"},
    "metrics": {"image_auc": 0.985, "pixel_auc": 0.976, "pixel_pro": 0.920},
}


def write(tmp_path, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    (tmp_path / "metrics.json").write_bytes(data)
    return tmp_path


def test_the_seed_example_is_read_as_written(tmp_path):
    params, metrics = read_metrics(write(tmp_path, json.dumps(SEED_EXAMPLE, indent=2)))
    assert params == SEED_EXAMPLE["params"]
    assert metrics == SEED_EXAMPLE["metrics"]


def test_params_may_be_left_out_and_numbers_become_floats():
    params, metrics = validate(
        {"metrics": {"acc": 1, "val/loss": 0.5, "top-1 acc:test": 2.5e-3, "neg": -3}}
    )
    assert params == {}
    assert metrics == {"acc": 1.0, "val/loss": 0.5, "top-1 acc:test": 0.0025, "neg": -3.0}
    assert all(type(v) is float for v in metrics.values())


def test_params_keep_strings_numbers_and_booleans():
    params, _ = validate({"params": {"s": "x", "i": 3, "f": 0.1, "b": True}, "metrics": {"m": 1}})
    assert params == {"s": "x", "i": 3, "f": 0.1, "b": True}


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ([1, 2], "metrics.json must be a JSON object"),
        ("text", "metrics.json must be a JSON object"),
        ({"params": {}}, 'metrics.json has no "metrics" object'),
        ({"metric": {"a": 1}, "metrics": {"a": 1}}, 'unknown keys "metric"'),
        ({"metrics": {}}, '"metrics" in metrics.json is empty'),
        ({"metrics": [0.9]}, '"metrics" in metrics.json must be an object, not a list'),
        ({"params": "x", "metrics": {"a": 1}}, '"params" in metrics.json must be an object'),
        ({"metrics": {"auc": float("nan")}}, 'metric "auc" is nan: metrics must be finite'),
        ({"metrics": {"auc": float("inf")}}, 'metric "auc" is inf: metrics must be finite'),
        ({"metrics": {"auc": -float("inf")}}, 'metric "auc" is -inf'),
        ({"metrics": {"auc": 10**400}}, 'metric "auc" is 1000000'),
        ({"metrics": {"auc": True}}, 'metric "auc" is a boolean: metrics are numbers'),
        ({"metrics": {"auc": "0.9"}}, 'metric "auc" is a string: metrics are numbers'),
        ({"metrics": {"auc": None}}, 'metric "auc" is null'),
        ({"metrics": {"auc": {"v": 1}}}, 'metric "auc" is an object'),
        ({"params": {"p": None}, "metrics": {"a": 1}}, 'param "p" is null'),
        ({"params": {"p": [1]}, "metrics": {"a": 1}}, 'param "p" is a list'),
        ({"params": {"p": float("nan")}, "metrics": {"a": 1}}, 'param "p" is nan'),
        ({"params": {"p": "x" * 501}, "metrics": {"a": 1}}, "longer than 500 characters"),
        ({"params": {"k" * 251: 1}, "metrics": {"a": 1}}, "longer than 250 characters"),
        ({"metrics": {"a\nb": 1}}, 'metric name "a\\nb" is not allowed'),
        ({"metrics": {"../x": 1}}, 'metric name "../x" is not allowed'),
        ({"metrics": {"/abs": 1}}, 'metric name "/abs" is not allowed'),
        ({"metrics": {"accuracy\u00e9": 1}}, "is not allowed"),
        ({"metrics": {"": 1}}, 'metric name "" is not allowed'),
        ({"params": {f"p{i}": i for i in range(101)}, "metrics": {"a": 1}}, "at most 100"),
        ({"metrics": {f"m{i}": i for i in range(101)}}, "has 101 entries: at most 100"),
    ],
)
def test_what_breaks_the_contract_is_refused_with_the_reason(doc, error):
    with pytest.raises(InvalidMetrics) as exc:
        validate(doc)
    assert error in str(exc.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "metrics.json is not valid JSON"),
        ("{'metrics': {}}", "metrics.json is not valid JSON"),
        (b"\xff\xfe{}", "metrics.json is not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "metrics.json is nested too deeply"),
        ('{"metrics": {"auc": NaN}}', 'metric "auc" is nan'),
        ('{"metrics": {"auc": 1e999}}', 'metric "auc" is inf'),
    ],
)
def test_a_file_that_is_not_json_is_refused(tmp_path, text, error):
    with pytest.raises(InvalidMetrics, match=error):
        read_metrics(write(tmp_path, text))


def test_a_missing_file_says_where_it_was_expected(tmp_path):
    with pytest.raises(InvalidMetrics, match=r"wrote no metrics.json into its output directory"):
        read_metrics(tmp_path)


def test_a_link_is_never_followed(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(SEED_EXAMPLE))
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").symlink_to(target)
    with pytest.raises(InvalidMetrics, match="is a symbolic link"):
        read_metrics(out)
    (out / "metrics.json").unlink()
    (out / "metrics.json").symlink_to("/etc/passwd")
    with pytest.raises(InvalidMetrics, match="is a symbolic link"):
        read_metrics(out)


def test_a_folder_or_a_fifo_is_not_a_regular_file(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(InvalidMetrics, match="is not a regular file"):
        read_metrics(tmp_path)
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "metrics.json")  # no writer: a blocking read would hang forever
    with pytest.raises(InvalidMetrics, match="is not a regular file"):
        read_metrics(fifo_dir)


def test_a_file_past_the_cap_is_not_read(tmp_path):
    big = json.dumps({"metrics": {"a": 1}, "params": {}}) + " " * MAX_BYTES
    with pytest.raises(InvalidMetrics, match="larger than 1024 KiB"):
        read_metrics(write(tmp_path, big))
