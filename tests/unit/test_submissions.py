"""What a leaderboard submission may hold (shared/submissions.py): names, kinds, archives
listed with the dataset checks (and tarballs with the same), the tree, the entrypoint and
config, metadata; and unpacking the same files as the API listed them."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from shared import submissions as s


def tgz(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("main.py", "py"),
        ("c.yaml", "yaml"),
        ("c.YML", "yaml"),
        ("a.zip", "zip"),
        ("a.tar.gz", "tar.gz"),
    ],
)
def test_allowed_kinds(name, kind):
    assert s.kind_of(name) == kind


@pytest.mark.parametrize(
    "name", ["run.sh", "a.tar", "../x.py", "dir/x.py", ".hidden.py", "", "x..py"]
)
def test_other_names_are_refused(name):
    with pytest.raises(s.InvalidSubmission):
        s.kind_of(name)


def test_archives_list_their_files_and_refuse_escapes_links_and_bombs():
    assert s.archive_paths("zip", io.BytesIO(zipped({"pkg/a.py": b"1"})), 10) == [("pkg/a.py", 1)]
    assert s.archive_paths("tar.gz", io.BytesIO(tgz({"./src//m.py": b"12"})), 10) == [
        ("src/m.py", 2)
    ]
    with pytest.raises(s.InvalidSubmission, match="Unsafe path"):
        s.archive_paths("tar.gz", io.BytesIO(tgz({"../m.py": b"1"})), 10)
    with pytest.raises(s.InvalidSubmission, match="link"):
        s.archive_paths("tar.gz", io.BytesIO(tgz({"m.py": b"1"}, link="l.py")), 10)
    bomb = tgz({"big.bin": b"\0" * (64 * 1024 * 1024)})
    with pytest.raises(s.InvalidSubmission, match="bomb"):
        s.archive_paths("tar.gz", io.BytesIO(bomb), len(bomb))
    with pytest.raises(s.InvalidSubmission, match="cannot be read"):
        s.archive_paths("tar.gz", io.BytesIO(b"not gzip"), 8)


def test_the_tree_refuses_a_path_twice_and_finds_the_entrypoint():
    paths = s.tree(
        [("main.py", [("main.py", 8)]), ("p.zip", [("pkg/__init__.py", 1), ("cfg/c.yaml", 1)])]
    )
    assert s.check_entry(paths, "./main.py", "cfg/c.yaml") == ("main.py", "cfg/c.yaml")
    with pytest.raises(s.InvalidSubmission, match="twice"):
        s.tree([("main.py", [("main.py", 1)]), ("p.zip", [("main.py", 1)])])
    with pytest.raises(s.InvalidSubmission, match="both a file and a folder"):
        s.tree([("pkg", [("pkg", 1)]), ("p.zip", [("pkg/a.py", 1)])])
    with pytest.raises(s.InvalidSubmission, match="unpack to"):  # the whole tree, not each archive
        s.tree([(f"a{i}.zip", [(f"a{i}/x", s.MAX_TREE_BYTES // 2)]) for i in range(3)])
    with pytest.raises(s.InvalidSubmission, match=r"must end with \.py"):
        s.check_entry(paths, "cfg/c.yaml", "cfg/c.yaml")
    with pytest.raises(s.InvalidSubmission, match="not among"):
        s.check_entry(paths, "other.py", "cfg/c.yaml")
    with pytest.raises(s.InvalidSubmission, match="relative path"):
        s.check_entry(paths, "/main.py", "cfg/c.yaml")


def test_metadata_is_a_json_object_naming_its_board():
    assert s.parse_metadata(None) == ({}, "default")
    assert s.parse_metadata('{"method": "padim", "leaderboard": "mvtec"}')[1] == "mvtec"
    deep = '{"a": ' * 12 + "1" + "}" * 12
    for bad in (
        "[1]",
        "{",
        '{"leaderboard": "../x"}',
        "x" * 20_000,
        "[" * 5000,
        deep,
        '{"x": 1e-200}',
        '{"x": 1' + "0" * 60 + "}",
    ):
        with pytest.raises(s.InvalidSubmission):
            s.parse_metadata(bad)


def test_unpack_gives_the_tree_the_api_listed(tmp_path):
    sent = {
        "main.py": b"print(1)",
        "pkg.zip": zipped({"pkg/__init__.py": b"X = 1"}),
        "more.tar.gz": tgz({"data/c.yaml": b"a: 1"}),
    }
    files = []
    for name, body in sent.items():
        (tmp_path / f"in-{name}").write_bytes(body)
        files.append((name, tmp_path / f"in-{name}"))
    dest = tmp_path / "code"
    dest.mkdir()
    listed = s.tree(
        [
            (
                n,
                [(n, len(b))]
                if s.kind_of(n) == "py"
                else s.archive_paths(s.kind_of(n), io.BytesIO(b), len(b)),
            )
            for n, b in sent.items()
        ]
    )
    assert s.unpack(files, dest) == listed == ["data/c.yaml", "main.py", "pkg/__init__.py"]
    assert (dest / "pkg" / "__init__.py").read_bytes() == b"X = 1"
