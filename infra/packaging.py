"""Lambda packages built at synth time without Docker: the code (functions/ and shared/)
as one asset, and each runtime's dependencies as a layer installed by pip for the
Lambda platform (manylinux, CPython 3.11). Layers are cached by their requirement set.
Image assets (Lambda and Batch) build with the repository as their context, less
``IMAGE_EXCLUDE``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "lambda"
PYTHON = "3.11"
# The Lambda runtime ships boto3; bundling it again only adds weight.
PROVIDED = ("boto3",)
# Not part of an image's build context (the images need shared/, so the context is ROOT):
# local environments (the sandbox's interpreter, .sandbox/, is gigabytes), local data,
# build output and caches.
IMAGE_EXCLUDE = [
    ".venv",
    ".ministack",
    ".sandbox",
    ".crucible",
    "build",
    "cdk.out",
    "tests",
    "bench",
    ".git",
    ".pytest_cache",
    ".ruff_cache",
    ".import_linter_cache",
    "*.egg-info",
]


def requirements(*extras: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return sorted(r for r in reqs if not r.lower().startswith(PROVIDED))


def layer(*extras: str) -> str:
    """A directory with ``python/`` holding the dependencies of ``extras``."""
    reqs = requirements(*extras)
    digest = hashlib.sha256("\n".join([PYTHON, *reqs]).encode()).hexdigest()[:12]
    out = BUILD / f"layer-{'-'.join(extras) or 'core'}-{digest}"
    if not (out / ".complete").exists():  # installed into a draft, then renamed into place
        shutil.rmtree(out, ignore_errors=True)  # one an older build left half-done
        BUILD.mkdir(parents=True, exist_ok=True)
        draft = Path(tempfile.mkdtemp(prefix=".layer-", dir=BUILD))
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--target",
                    str(draft / "python"),
                    "--platform",
                    "manylinux2014_x86_64",
                    "--implementation",
                    "cp",
                    "--python-version",
                    PYTHON,
                    "--only-binary=:all:",
                    *reqs,
                ],
                check=True,
            )
        except BaseException:  # nothing half-installed is left behind
            shutil.rmtree(draft, ignore_errors=True)
            raise
        (draft / ".complete").touch()
        try:
            draft.rename(out)
        except OSError:  # another synthesis installed it first
            shutil.rmtree(draft, ignore_errors=True)
    return str(out)


def code() -> str:
    """functions/ and shared/ without caches or the local-only stack, in a folder named by
    its content. Copied into a draft folder of its own, then renamed into place, so
    syntheses running side by side (two test workers, two terminals) never see or break
    one another's half-copied tree; folders of other contents are removed after an hour."""
    BUILD.mkdir(parents=True, exist_ok=True)
    draft = Path(tempfile.mkdtemp(prefix=".code-", dir=BUILD))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local", "*.Dockerfile")
    for pkg in ("functions", "shared"):
        shutil.copytree(ROOT / pkg, draft / pkg, ignore=ignore)
    digest = hashlib.sha256()
    for path in sorted(p for p in draft.rglob("*") if p.is_file()):
        digest.update(path.relative_to(draft).as_posix().encode() + b"\0" + path.read_bytes())
    out = BUILD / f"code-{digest.hexdigest()[:16]}"
    try:
        draft.rename(out)
    except OSError:  # already built, by this content
        shutil.rmtree(draft, ignore_errors=True)
        os.utime(out)  # in use: not old
    for old in BUILD.glob("code-*"):
        if old != out and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    return str(out)
