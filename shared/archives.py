"""Untrusted zips and tarballs, opened safely: no absolute or ``..`` paths (zip slip), no
symlinks, devices or encrypted entries, a bounded entry count and uncompressed size, and a
bounded expansion ratio per entry and for the archive as a whole (zip bombs); every read
bounded (:class:`Archive`), and extraction with the same checks. What a dataset's files
mean is shared/datasets.py's business; a leaderboard submission's, shared/submissions.py's."""

from __future__ import annotations

import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import PurePosixPath
from typing import IO

from shared.errors import InvalidInput

MiB = 1024 * 1024
MAX_ENTRIES = 200_000
MAX_UNCOMPRESSED = 20 * 1024**3  # 20 GiB
MAX_RATIO = 200  # uncompressed / compressed: per entry, and for the archive as a whole
RATIO_FLOOR = 1 * MiB  # smaller than this (an entry, or the whole archive), any ratio is fine
# One member parsed whole: a COCO JSON of ~60,000 annotations, an LJSpeech metadata.csv of
# ~100,000 lines; parsed, ~10x that in memory. Larger COCO sets split their annotations.
MAX_PARSED_BYTES = 8 * MiB
MAX_READ_BYTES = 256 * MiB  # everything one inspection reads (labels, annotations, headers)

# What a damaged or unsupported member raises when it is read.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,  # a header offset that points before the archive ("negative seek value")
    struct.error,
)


class InvalidDataset(InvalidInput):
    code = "INVALID_DATASET"


def open_zip(source: str | IO[bytes]) -> zipfile.ZipFile:
    """A zip's directory read, or InvalidDataset: whatever a damaged directory raises
    (a bad signature, a version from the future, a name that is not text) says so."""
    try:
        return zipfile.ZipFile(source)
    except _READ_ERRORS as exc:
        raise InvalidDataset(f"Not a readable zip archive: {exc}") from None


def mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def _check_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith(("/", "\\"))
        or ":" in path.parts[0]
        or ".." in path.parts
        or "\\" in name
        or "\x00" in name
    ):
        raise InvalidDataset(f"Unsafe path in the archive: '{name}'")
    return path


def _skipped(path: PurePosixPath) -> bool:
    """Members nobody means to send: macOS resource forks and hidden files."""
    return "__MACOSX" in path.parts or path.name.startswith(".")


def members(
    zf: zipfile.ZipFile, *, max_entries: int = MAX_ENTRIES, max_total: int = MAX_UNCOMPRESSED
) -> list[zipfile.ZipInfo]:
    """The archive's files, refusing anything that could escape or explode."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise InvalidDataset(
            f"The archive has {len(infos)} entries; at most {max_entries} are allowed"
        )
    total, packed, files, seen, folders = 0, 0, [], set(), set()
    for info in infos:
        name = info.filename
        path = _check_path(name)
        # one path, one file: a name twice (also as 'a//b' or 'a/./b') cannot be unpacked
        if not info.is_dir():
            if str(path) in seen:
                raise InvalidDataset(f"'{name}' is in the archive twice")
            seen.add(str(path))
            folders.update(str(p) for p in path.parents)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidDataset(f"Symbolic links are not allowed in datasets: '{name}'")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise InvalidDataset(f"Encrypted entries are not supported: '{name}'")
        total += info.file_size
        packed += info.compress_size
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidDataset(
                f"'{name}' expands {info.file_size // max(info.compress_size, 1)}x: refused as a zip bomb"
            )
        if total > max_total:
            raise InvalidDataset(f"The archive expands beyond {mib(max_total)}")
        if _skipped(path):
            continue
        files.append(info)
    # Many small entries, each under the floor, can expand as far as one big one.
    if total > RATIO_FLOOR and total > MAX_RATIO * max(packed, 1):
        raise InvalidDataset(
            f"The archive's {len(infos)} entries expand {total // max(packed, 1)}x in all "
            f"({mib(total)} from {mib(packed)}): refused as a zip bomb"
        )
    if not files:
        raise InvalidDataset("The archive contains no files")
    if both := folders & seen:
        raise InvalidDataset(f"'{min(both)}' is in the archive as a file and as a folder")
    return files


def strip_root(names: list[str]) -> str:
    """A single top-level folder that wraps everything (``mydata/...``), or ''."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        return tops.pop() + "/"
    return ""


class Archive:
    """An open dataset zip, its files by path (inside a wrapping folder, if any), and
    the bytes inspection has read from it so far: every read is bounded."""

    def __init__(self, zf: zipfile.ZipFile, files: list[zipfile.ZipInfo]) -> None:
        self.zf = zf
        self.root = strip_root([f.filename for f in files])
        self.rel = {f.filename[len(self.root) :]: f for f in files}
        self.read_bytes = 0

    def read(self, name: str, limit: int = MAX_PARSED_BYTES) -> bytes:
        """The whole of a member that is parsed; refused (unread) when over ``limit``."""
        info = self.rel[name]
        if info.file_size > limit:
            raise InvalidDataset(
                f"'{name}' is {mib(info.file_size)}; files that inspection parses (data.yaml, "
                f"label files, COCO annotations, metadata.csv) may be at most {mib(limit)} each"
            )
        data = self._take(name, info, limit + 1)
        if len(data) > limit:  # a member larger than the archive says (zipfile stops at its size)
            raise InvalidDataset(f"'{name}' is larger than {mib(limit)}")
        return data

    def head(self, name: str, n: int) -> bytes:
        """At most the first ``n`` bytes of a member."""
        return self._take(name, self.rel[name], n)

    def verify(self) -> None:
        """Decompress every member once, as a stream (nothing kept), so zipfile checks it
        against its CRC-32 and size: refused now if damaged, not when a job unpacks it."""
        for name, info in self.rel.items():
            try:
                with self.zf.open(info) as f:
                    while f.read(1 << 20):
                        pass
            except _READ_ERRORS as exc:
                raise InvalidDataset(
                    f"'{name}' is damaged in the archive ({exc}); zip the dataset again"
                ) from None

    def text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(f"'{name}' is not UTF-8 text: {exc.reason}") from None

    def _take(self, name: str, info: zipfile.ZipInfo, n: int) -> bytes:
        if self.read_bytes + min(info.file_size, n) > MAX_READ_BYTES:
            raise InvalidDataset(
                f"Inspecting this archive would read more than {mib(MAX_READ_BYTES)} of labels, "
                "annotations and headers; split it into smaller datasets"
            )
        try:
            with self.zf.open(info) as f:
                data = f.read(n)
        except _READ_ERRORS as exc:
            raise InvalidDataset(f"'{name}' cannot be read from the archive: {exc}") from None
        self.read_bytes += len(data)
        return data


def extract(
    source: str | IO[bytes],
    dest: str,
    *,
    strip: bool = True,
    max_entries: int = MAX_ENTRIES,
    max_total: int = MAX_UNCOMPRESSED,
) -> str:
    """Extract a zip under ``dest`` with the same checks as :func:`members`; returns the
    root of what it holds: inside a single wrapping folder, if there is one and ``strip``."""
    from pathlib import Path

    base = Path(dest).resolve()
    with zipfile.ZipFile(source) as zf:
        files = members(zf, max_entries=max_entries, max_total=max_total)
        for info in files:
            with zf.open(info) as src:
                _write(base, info.filename, src)
        root = strip_root([f.filename for f in files]) if strip else ""
    return str(base / root) if root else str(base)


def _write(base, name: str, src: IO[bytes]) -> None:
    target = (base / name).resolve()
    if not target.is_relative_to(base):  # belt and braces after the members' checks
        raise InvalidDataset(f"Unsafe path in the archive: '{name}'")
    if target.exists():
        raise InvalidDataset(f"'{name}' is in the archive twice")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        shutil.copyfileobj(src, out, 1 << 20)  # streamed: a member may be GiBs


def tar_members(
    tf: tarfile.TarFile, packed: int, *, max_entries: int, max_total: int
) -> list[tarfile.TarInfo]:
    """A gzipped tarball's files (``packed``: its size as sent), with a zip's checks:
    regular files and folders only (no links, devices or pipes), and the declared sizes
    bounded as they are read, so a bomb is refused before it is expanded."""
    files, total, count = [], 0, 0
    try:
        for info in tf:
            count += 1
            if count > max_entries:
                raise InvalidDataset(f"The archive has more than {max_entries} entries")
            path = _check_path(info.name.removeprefix("./") if info.name != "./" else "x/")
            if info.isdir():
                continue
            if not info.isreg():
                raise InvalidDataset(
                    f"Only files and folders are allowed in archives: '{info.name}' is a link "
                    "or a device"
                )
            total += info.size
            if total > max_total:
                raise InvalidDataset(f"The archive expands beyond {mib(max_total)}")
            if total > RATIO_FLOOR and total > MAX_RATIO * max(packed, 1):  # before expanding on
                raise InvalidDataset(
                    f"The archive expands more than {MAX_RATIO}x (past {mib(total)} from "
                    f"{mib(packed)}): refused as a bomb"
                )
            if not _skipped(path):
                files.append(info)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InvalidDataset(f"The archive cannot be read as a .tar.gz: {exc}") from None
    if not files:
        raise InvalidDataset("The archive contains no files")
    return files


def extract_tar(source: str, dest: str, *, max_entries: int, max_total: int) -> list[str]:
    """Extract a gzipped tarball under ``dest`` with :func:`tar_members`' checks (never
    tarfile's own extraction); returns the paths of the files written."""
    import os
    from pathlib import Path

    base = Path(dest).resolve()
    packed = os.path.getsize(source)
    with tarfile.open(source, mode="r:gz") as tf:
        files = tar_members(tf, packed, max_entries=max_entries, max_total=max_total)
        for info in files:
            src = tf.extractfile(info)
            if src is None:
                raise InvalidDataset(f"'{info.name}' cannot be read from the archive")
            with src:
                _write(base, info.name.removeprefix("./"), src)
    return [info.name.removeprefix("./") for info in files]
