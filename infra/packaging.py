"""Lambda packages built at synth time without Docker: the code (functions/ and shared/)
as one asset, and each runtime's dependencies as a layer installed by pip for the
Lambda platform (manylinux, CPython 3.11). Layers are cached by their requirement set.
Image assets (Lambda and Batch) build with the repository as their context, less
``IMAGE_EXCLUDE``."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
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
    if not (out / ".complete").exists():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(out / "python"),
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
        (out / ".complete").touch()
    return str(out)


def code() -> str:
    """functions/ and shared/ without caches or the local-only stack."""
    out = BUILD / "code"
    shutil.rmtree(out, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local", "*.Dockerfile")
    for pkg in ("functions", "shared"):
        shutil.copytree(ROOT / pkg, out / pkg, ignore=ignore)
    return str(out)
