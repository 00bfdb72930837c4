"""metrics.json, as the evaluator reads it: the seed's contract checked, every refusal
naming what to fix, and the file read without trusting it (no links, no FIFOs, a size cap);
and the job's log around its final state, which followers hear last."""

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


def test_numbers_and_names_at_the_edges_are_kept():
    edge = {"zero": 0, "tiny": -1e-130, "huge": 9.99e125, "digits": 10**38 - 1}
    params, metrics = validate(
        {"params": {**edge, "s": "x" * 500}, "metrics": {**edge, " a:b/c-d.e": 1, ".5": 2}}
    )
    assert params["digits"] == 10**38 - 1 and params["tiny"] == -1e-130
    assert metrics["huge"] == 9.99e125 and metrics["zero"] == 0.0
    assert set(metrics) == {*edge, " a:b/c-d.e", ".5"}


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
        # names MLflow would refuse, or keep as another path than written
        ({"metrics": {"a/": 1}}, 'metric name "a/" is not allowed: no empty'),
        ({"metrics": {"./a": 1}}, 'metric name "./a" is not allowed: no empty'),
        ({"metrics": {"a//b": 1}}, 'metric name "a//b" is not allowed: no empty'),
        ({"metrics": {"a/./b": 1}}, 'metric name "a/./b" is not allowed'),
        ({"metrics": {"a/..": 1}}, 'metric name "a/.." is not allowed'),
        ({"metrics": {".": 1}}, 'metric name "." is not allowed'),
        ({"params": {"..": 1}, "metrics": {"a": 1}}, 'param name ".." is not allowed'),
        ({"metrics": {" ": 1}}, 'metric name " " is not allowed: it needs a letter or a digit'),
        ({"metrics": {"-": 1}}, "it needs a letter or a digit"),
        ({"params": {"_:.": 1}, "metrics": {"a": 1}}, "it needs a letter or a digit"),
        # numbers the leaderboard (DynamoDB) cannot store
        ({"metrics": {"m": 1e200}}, 'metric "m" is 1e+200: numbers must be 0 or of a magnitude'),
        ({"metrics": {"m": -1e126}}, 'metric "m" is -1e+126: numbers must be 0'),
        ({"metrics": {"m": 1e-200}}, 'metric "m" is 1e-200: numbers must be 0'),
        ({"metrics": {"m": 10**38}}, 'metric "m" is 1' + "0" * 38 + "... (39 digits)"),
        ({"params": {"p": 10**60}, "metrics": {"a": 1}}, "(61 digits): integers may have at most"),
        ({"params": {"p": 1e-131}, "metrics": {"a": 1}}, 'param "p" is 1e-131: numbers must'),
        ({"params": {"p": -1e200}, "metrics": {"a": 1}}, 'param "p" is -1e+200'),
        (
            {"params": {f"p{i}": "v" * 400 for i in range(21)}, "metrics": {"a": 1}},
            "as JSON: at most 8 KiB in all",
        ),
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


# --- the job's log around its final state (crucible_evaluator.joblog, entrypoint._end) ---
class Followers:
    """A stand-in for the evaluation service: what followers hear, in order."""

    def __init__(self, ended: bool = False) -> None:
        self.heard: list[str] = []
        self.saved = b""
        self.ended = ended

    def save_logs(self, _job_id: str, text: bytes) -> None:
        self.saved = text

    def publish_logs(self, _job: object, _seq: int, lines: list[str]) -> None:
        self.heard += [line.split("] ", 1)[1] for line in lines]

    def end(self, status: str):
        if self.ended:
            return None  # the service's conditional write: it had ended already
        self.ended = True
        self.heard.append(f"status: {status}")
        return status


def joblog(followers: Followers, **kw):
    from types import SimpleNamespace

    from crucible_evaluator.joblog import JobLog

    job = SimpleNamespace(id="job1")
    return JobLog(followers, job, ended=lambda: followers.ended, **kw)  # type: ignore[arg-type]


def test_followers_hear_the_last_lines_then_the_final_state_last():
    from crucible_evaluator.entrypoint import _end

    followers = Followers()
    log = joblog(followers).start()
    log.add("Metrics: auc=0.9")
    log.add("Job completed")
    assert _end(log, lambda: followers.end("completed")) == "completed"
    assert followers.heard == ["Metrics: auc=0.9", "Job completed", "status: completed"]
    assert followers.saved.endswith(b"Job completed\n")


def test_a_job_ended_meanwhile_gets_its_log_saved_not_pushed():
    from crucible_evaluator.entrypoint import _end

    followers = Followers(ended=True)  # cancelled: followers heard "cancelled" already
    log = joblog(followers).start()
    log.add("Stopped: the job was cancelled or its evaluator was stopped (SIGTERM)")
    assert _end(log, lambda: followers.end("failed")) is None
    assert followers.heard == []
    assert b"Stopped: the job was cancelled" in followers.saved


def test_the_log_thread_stops_pushing_once_the_job_has_ended():
    import time

    followers = Followers()
    log = joblog(followers, push_every=0.02, save_every=0.02).start()
    log.add("first")
    deadline = time.monotonic() + 5
    while not followers.heard and time.monotonic() < deadline:
        time.sleep(0.01)
    followers.end("cancelled")  # the API cancelled it: its state is the last word
    log.add("after the cancel")
    time.sleep(0.2)
    assert followers.heard == ["first", "status: cancelled"]
    log.close(push=False)
    assert followers.saved.endswith(b"after the cancel\n")  # saved, never pushed


# --- the sandbox's seccomp filter, run by a small classic-BPF interpreter -----------------
def run_filter(program: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    """What the kernel would do with this system call: the filter's return value."""
    import struct

    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x06:  # ret k
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        pc += 1


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_filter_refuses_what_it_lists_and_allows_the_rest(machine):
    import errno

    from crucible_evaluator import seccomp

    program = seccomp.program(machine)
    arch, nr, x32 = seccomp.ARCHES[machine]
    assert program is not None and len(program) % 8 == 0
    eperm = seccomp.RET_ERRNO | errno.EPERM
    for name in seccomp.DENIED:
        assert run_filter(program, arch, nr[name]) == eperm, name
    assert run_filter(program, arch, nr["clone3"]) == seccomp.RET_ERRNO | errno.ENOSYS
    assert run_filter(program, arch, nr["fallocate"]) == seccomp.RET_ERRNO | errno.EOPNOTSUPP
    assert run_filter(program, arch, nr["personality"], 0xFFFFFFFF) == seccomp.RET_ALLOW
    assert run_filter(program, arch, nr["personality"], 0) == seccomp.RET_ALLOW
    assert run_filter(program, arch, nr["personality"], 0x0040000) == eperm
    thread = 0x3D0F00  # what glibc's pthread_create passes: no namespace flag
    assert run_filter(program, arch, nr["clone"], thread) == seccomp.RET_ALLOW
    for flag in (seccomp.CLONE_NEWUSER, seccomp.CLONE_NEWNET, seccomp.CLONE_NEWNS):
        assert run_filter(program, arch, nr["clone"], 0x11 | flag) == eperm
    for allowed in (0, 1, 3, 60, 200, 424):  # read, write, close, exit... (either table)
        if allowed not in nr.values():
            assert run_filter(program, arch, allowed) == seccomp.RET_ALLOW, allowed
    assert run_filter(program, 0x40000003, 1) == seccomp.RET_KILL_PROCESS  # i386
    if x32:
        assert run_filter(program, arch, 0x40000000 | 1) == eperm
    assert seccomp.program("sparc64") is None
