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
MAX_METADATA_BYTES = 16 * 1024
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


def archive_paths(kind: FileKind, data: IO[bytes], size: int) -> list[str]:
    """The files an archive holds (its checks refuse traversal, links and bombs)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(data) as zf:
                return [
                    i.filename
                    for i in members(zf, max_entries=MAX_TREE_FILES, max_total=MAX_TREE_BYTES)
                ]
        with tarfile.open(fileobj=data, mode="r:gz") as tf:
            infos = tar_members(tf, size, max_entries=MAX_TREE_FILES, max_total=MAX_TREE_BYTES)
            return [i.name.removeprefix("./") for i in infos]
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


def tree(files: list[tuple[str, list[str]]]) -> list[str]:
    """Every path of the unpacked tree, from each file's name and (for an archive) the
    paths it holds; the same path twice is refused (nothing would say which one wins)."""
    seen: dict[str, str] = {}
    for name, inside in files:
        for path in inside:
            if path in seen:
                raise InvalidSubmission(
                    f"'{path}' comes twice (from {seen[path]} and {name}): send it once",
                    field="files",
                )
            seen[path] = name
    if len(seen) > MAX_TREE_FILES:
        raise InvalidSubmission(f"At most {MAX_TREE_FILES} files in all", field="files")
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
    leaderboard it names (``"leaderboard"``, default ``default``)."""
    if text is None or not text.strip():
        return {}, DEFAULT_BOARD
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidSubmission(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata"
        )
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise InvalidSubmission(f"metadata is not valid JSON: {exc}", field="metadata") from None
    if not isinstance(meta, dict):
        raise InvalidSubmission(
            'metadata must be a JSON object, e.g. {"method":"padim"}', field="metadata"
        )
    board = meta.get("leaderboard", DEFAULT_BOARD)
    if not isinstance(board, str) or not _BOARD.fullmatch(board):
        raise InvalidSubmission(
            "metadata.leaderboard must be lower-case letters, digits, '_' and '-' (48 at most)",
            field="metadata",
        )
    return meta, board


def unpack(files: list[tuple[str, Path]], dest: Path) -> list[str]:
    """Unpack a submission's files (name as sent, local path) into ``dest``: plain files as
    they are, archives at the root, with the API's checks again. Returns the tree."""
    listed: list[tuple[str, list[str]]] = []
    for name, local in files:
        kind = kind_of(name)
        if kind == "zip":
            with open(local, "rb") as f:
                inside = archive_paths(kind, f, local.stat().st_size)
            extract(
                str(local),
                str(dest),
                strip=False,
                max_entries=MAX_TREE_FILES,
                max_total=MAX_TREE_BYTES,
            )
        elif kind == "tar.gz":
            inside = extract_tar(
                str(local), str(dest), max_entries=MAX_TREE_FILES, max_total=MAX_TREE_BYTES
            )
        else:
            inside = [name]
            target = dest / name
            if target.exists():
                raise InvalidSubmission(f"'{name}' comes twice: send it once", field="files")
            target.write_bytes(local.read_bytes())
        listed.append((name, inside))
    return tree(listed)


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
