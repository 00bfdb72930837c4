"""Seed 004's submissions: what a researcher may send, and the tree of code it unpacks to.

A submission is some files (``.py``, ``.yaml``/``.yml``, ``.zip``, ``.tar.gz``), an
entrypoint and a config file. Archives unpack at the root of the tree, beside the plain
files, so ``main.py`` sent beside ``mypkg.zip`` imports ``mypkg``. The API lists the tree
when the files arrive (names only, archives inspected with shared/archives.py's checks)
and refuses a submission whose entrypoint or config is not in it; the evaluator unpacks
the same files with the same function before it runs anything. Nothing here executes or
imports what was sent.
"""

from __future__ import annotations

import json
import math
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from shared.archives import InvalidDataset, extract, extract_tar, members, mib, tar_members
from shared.errors import InvalidInput

FileKind = Literal["py", "yaml", "zip", "tar.gz"]
EXTENSIONS: dict[str, FileKind] = {
    ".py": "py",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".zip": "zip",
    ".tar.gz": "tar.gz",
}
ALLOWED = ", ".join(EXTENSIONS)
MAX_FILES = 100  # files in one request
MAX_TREE_FILES = 10_000  # files once archives are unpacked
MAX_TREE_BYTES = 1024 * 1024 * 1024  # the unpacked tree
MAX_METADATA_BYTES = 4 * 1024
MAX_METADATA_DEPTH = 8
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_BOARD = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
DEFAULT_BOARD = "default"


class InvalidSubmission(InvalidInput):
    code = "INVALID_SUBMISSION"


def kind_of(name: str) -> FileKind:
    """The kind of a file sent by its name, which must be a plain file name (no folders)
    with an allowed extension."""
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise InvalidSubmission(
            f"'{name}' is not a plain file name: use letters, digits, '_', '.', '+' and '-' "
            "(no folders; put folders in a .zip or .tar.gz)",
            field="files",
        )
    for ext, kind in sorted(EXTENSIONS.items(), key=lambda e: -len(e[0])):
        if name.lower().endswith(ext):
            return kind
    raise InvalidSubmission(f"'{name}' is not allowed: send only {ALLOWED} files", field="files")


def archive_paths(kind: FileKind, data: IO[bytes], size: int) -> list[tuple[str, int]]:
    """The files an archive holds, as normalised paths with their sizes (its checks refuse
    traversal, links and bombs)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(data) as zf:
                infos = members(zf, max_entries=MAX_TREE_FILES, max_total=MAX_TREE_BYTES)
                return [(_normal(i.filename), i.file_size) for i in infos]
        with tarfile.open(fileobj=data, mode="r:gz") as tf:
            found = tar_members(tf, size, max_entries=MAX_TREE_FILES, max_total=MAX_TREE_BYTES)
            return [(_normal(i.name), i.size) for i in found]
    except zipfile.BadZipFile as exc:
        raise InvalidSubmission(
            f"The archive cannot be read as a .zip: {exc}", field="files"
        ) from None
    except tarfile.TarError as exc:
        raise InvalidSubmission(
            f"The archive cannot be read as a .tar.gz: {exc}", field="files"
        ) from None
    except InvalidDataset as exc:
        raise InvalidSubmission(exc.detail, field="files") from None


def _normal(name: str) -> str:
    """``./a//b.py`` -> ``a/b.py``: one spelling per path, so duplicates are seen."""
    return str(PurePosixPath(name))


def tree(files: list[tuple[str, list[tuple[str, int]]]]) -> list[str]:
    """Every path of the unpacked tree, from each file's name and the (path, size) pairs
    it unpacks to; the same path twice is refused (nothing would say which one wins), and
    so is a tree past ``MAX_TREE_FILES`` files or ``MAX_TREE_BYTES`` in all."""
    seen: dict[str, str] = {}
    total = 0
    for name, inside in files:
        for path, size in inside:
            if path in seen:
                raise InvalidSubmission(
                    f"'{path}' comes twice (from {seen[path]} and {name}): send it once",
                    field="files",
                )
            seen[path] = name
            total += size
    if len(seen) > MAX_TREE_FILES:
        raise InvalidSubmission(f"At most {MAX_TREE_FILES} files in all", field="files")
    if total > MAX_TREE_BYTES:
        raise InvalidSubmission(
            f"The files unpack to {mib(total)}; at most {mib(MAX_TREE_BYTES)} in all",
            field="files",
        )
    folders = {str(p) for path in seen for p in PurePosixPath(path).parents}
    clash = next((p for p in seen if p in folders), None)
    if clash:
        raise InvalidSubmission(f"'{clash}' is both a file and a folder", field="files")
    return sorted(seen)


def check_entry(paths: list[str], entrypoint: str, config_file: str) -> tuple[str, str]:
    """The entrypoint and config, as relative paths of the tree (``./`` dropped)."""
    found = set(paths)
    out = []
    for field, value, suffixes in (
        ("entrypoint", entrypoint, (".py",)),
        ("config_file", config_file, (".yaml", ".yml")),
    ):
        rel = (value or "").strip().removeprefix("./")
        path = PurePosixPath(rel)
        if not rel or path.is_absolute() or ".." in path.parts or "\\" in rel:
            raise InvalidSubmission(
                f"{field} must be a relative path in what you sent, e.g. 'main.py'", field=field
            )
        if not rel.endswith(suffixes):
            raise InvalidSubmission(f"{field} must end with {' or '.join(suffixes)}", field=field)
        if rel not in found:
            listed = ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else "")
            raise InvalidSubmission(
                f"{field} '{rel}' is not among the files sent ({listed})", field=field
            )
        out.append(rel)
    return out[0], out[1]


def parse_metadata(text: str | None) -> tuple[dict, str]:
    """Seed 004's ``metadata`` (a JSON object, e.g. ``{"method":"padim"}``) and the
    leaderboard it names (``"leaderboard"``, default ``default``). It is shown on the
    public leaderboard, so it is small, shallow and plain."""
    if text is None or not text.strip():
        return {}, DEFAULT_BOARD
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidSubmission(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata"
        )
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidSubmission(f"metadata is not valid JSON: {exc}", field="metadata") from None
    if not isinstance(meta, dict):
        raise InvalidSubmission(
            'metadata must be a JSON object, e.g. {"method":"padim"}', field="metadata"
        )
    _plain(meta, "metadata", 0)
    board = meta.get("leaderboard", DEFAULT_BOARD)
    if not isinstance(board, str) or not _BOARD.fullmatch(board):
        raise InvalidSubmission(
            "metadata.leaderboard must be lower-case letters, digits, '_' and '-' (48 at most)",
            field="metadata",
        )
    return meta, board


def _plain(value: object, where: str, depth: int) -> None:
    """Nested at most ``MAX_METADATA_DEPTH`` deep, numbers storable as they are (DynamoDB
    keeps 38 digits between 1e-130 and 1e126; no NaN or infinity)."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidSubmission(
            f"metadata may nest at most {MAX_METADATA_DEPTH} levels", field="metadata"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _plain(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, float) and (
        not math.isfinite(value) or (value != 0 and not 1e-130 < abs(value) < 1e126)
    ):
        raise InvalidSubmission(f"{where}: {value} cannot be stored as a number", field="metadata")
    elif isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > 38:
        raise InvalidSubmission(f"{where}: at most 38 digits", field="metadata")


def unpack(files: list[tuple[str, Path]], dest: Path) -> list[str]:
    """Unpack a submission's files (name as sent, local path) into ``dest``: plain files as
    they are, archives at the root, with the API's checks again (the whole tree bounded).
    Returns the tree."""
    listed: list[tuple[str, list[tuple[str, int]]]] = []
    for name, local in files:
        kind = kind_of(name)
        if kind in ("zip", "tar.gz"):
            with open(local, "rb") as f:
                inside = archive_paths(kind, f, local.stat().st_size)
        else:
            inside = [(name, local.stat().st_size)]
        listed.append((name, inside))
    paths = tree(listed)  # refuses duplicates and a tree too large before anything is written
    for name, local in files:
        kind = kind_of(name)
        limits = {"max_entries": MAX_TREE_FILES, "max_total": MAX_TREE_BYTES}
        if kind == "zip":
            extract(str(local), str(dest), strip=False, **limits)
        elif kind == "tar.gz":
            extract_tar(str(local), str(dest), **limits)
        else:
            target = dest / name
            if target.exists():
                raise InvalidSubmission(f"'{name}' comes twice: send it once", field="files")
            target.write_bytes(local.read_bytes())
    return paths


__all__ = [
    "ALLOWED",
    "InvalidSubmission",
    "archive_paths",
    "check_entry",
    "kind_of",
    "mib",
    "parse_metadata",
    "tree",
    "unpack",
]
