"""Saving received files (chatclient.files, spec 8.4): safe names, no overwrite, temporary
files renamed only when complete, nothing left behind."""

from __future__ import annotations

import errno
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatwire as cw
from chatclient.files import (
    MAX_NAME_BYTES,
    NEUTRAL_NAME,
    STALE_PART_AGE,
    Download,
    default_downloads,
    ensure_folder,
    remove_stale_parts,
    safe_name,
    unique_name,
)


@pytest.mark.parametrize(
    ("received", "saved"),
    [
        ("photo.jpg", "photo.jpg"),
        ("João e Zé.pdf", "João e Zé.pdf"),
        ("李小龙.txt", "李小龙.txt"),
        (".bashrc", "bashrc"),  # no leading dot: no hidden files, no dotfiles replaced
        ("..hidden", "hidden"),
        ("...", NEUTRAL_NAME),
        ("   ", NEUTRAL_NAME),  # only spaces: nothing is left
        (" . ", NEUTRAL_NAME),
        ("-rf", "rf"),  # not an option to a shell tool
        ("--help.txt", "help.txt"),
        ("a:b*c?.txt", "a_b_c_.txt"),  # characters Windows forbids
        ('q"<>|.txt', "q____.txt"),
        ("../../.bashrc", "_.._.bashrc"),  # malformed on the wire; still made harmless
        ("..\\..\\evil.exe", "_.._evil.exe"),
        ("C:\\Windows\\x", "C__Windows_x"),
        ("CON", "_CON"),  # Windows device names, with any extension and case
        ("con.txt", "_con.txt"),
        ("Nul .tar.gz", "_Nul .tar.gz"),
        ("LPT9", "_LPT9"),
        ("COM1.log", "_COM1.log"),
        ("CONSOLE.txt", "CONSOLE.txt"),  # not a device name
        ("trailing. . ", "trailing"),
        ("a\x1b[31mb", "a_[31mb"),  # control characters (malformed on the wire too)
        ("gpj\u202eexe.jpg", "gpj_exe.jpg"),  # a bidirectional override
        ("zero\u200bwidth", "zero_width"),  # format characters
        ("line\u2028sep", "line_sep"),
        ("nbsp\u00a0x", "nbsp_x"),
    ],
)
def test_safe_name(received: str, saved: str) -> None:
    assert safe_name(received) == saved


def test_long_names_are_cut_between_characters_keeping_the_extension() -> None:
    name = "ç" * 127 + ".tar.gz"  # 261 bytes
    saved = safe_name(name)
    assert len(saved.encode()) <= MAX_NAME_BYTES
    assert saved.endswith(".gz") and saved.startswith("ç")
    assert saved.encode().decode() == saved  # whole characters
    long_extension = "a." + "b" * 250
    assert len(safe_name(long_extension).encode()) <= MAX_NAME_BYTES
    assert safe_name("x" * 255) == "x" * MAX_NAME_BYTES


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)


@given(names)
def test_any_name_gives_a_safe_base_name(name: str) -> None:
    saved = safe_name(name)
    assert saved
    assert 0 < len(saved.encode("utf-8")) <= MAX_NAME_BYTES
    assert not set(saved) & set('/\\:*?"<>|')
    assert not saved.startswith((".", " ", "-"))
    assert not saved.endswith((".", " "))
    assert saved not in (".", "..")
    assert all(unicodedata.category(c)[0] != "C" for c in saved)
    assert cw.file_name_error(saved) is None  # also a valid name to send on (spec 2.8.5)
    assert os.path.basename(saved) == saved
    for index in (1, 99, 9999):  # room left for the copy suffix within NAME_MAX
        assert len(unique_name(saved, index).encode()) <= cw.NAME_MAX


def test_unique_name() -> None:
    assert unique_name("a.txt", 0) == "a.txt"
    assert unique_name("a.txt", 1) == "a (1).txt"
    assert unique_name("archive.tar.gz", 2) == "archive.tar (2).gz"
    assert unique_name("README", 3) == "README (3)"


def test_download_is_renamed_only_when_complete(tmp_path: Path) -> None:
    download = Download(tmp_path, ".profile", 6)
    temp = download.temp_path
    assert temp.parent == tmp_path  # same folder: publishing is a rename, never a copy
    download.write(b"abc")
    download.write(memoryview(b"def"))
    assert [p.name for p in tmp_path.iterdir()] == [temp.name]  # only the temporary file
    path = download.finish()
    assert path == tmp_path / "profile"
    assert path.read_bytes() == b"abcdef"
    assert list(tmp_path.iterdir()) == [path]


def test_download_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"old")
    (tmp_path / "a (1).txt").write_bytes(b"old1")
    paths = []
    for content in (b"new", b"newer"):
        download = Download(tmp_path, "a.txt", len(content))
        download.write(content)
        paths.append(download.finish())
    assert paths == [tmp_path / "a (2).txt", tmp_path / "a (3).txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert (tmp_path / "a (1).txt").read_bytes() == b"old1"
    assert (tmp_path / "a (3).txt").read_bytes() == b"newer"


def test_a_symlink_in_the_way_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.write_bytes(b"keep")
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "x.txt").symlink_to(target)
    download = Download(folder, "x.txt", 3)
    download.write(b"new")
    assert download.finish() == folder / "x (1).txt"
    assert target.read_bytes() == b"keep"


def test_wrong_size_is_discarded(tmp_path: Path) -> None:
    download = Download(tmp_path, "a.txt", 10)
    download.write(b"short")
    with pytest.raises(ValueError, match="5 bytes of 10"):
        download.finish()
    assert list(tmp_path.iterdir()) == []


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    download = Download(tmp_path, "a.txt", 10)
    download.write(b"part")
    download.discard()
    download.discard()  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_without_hard_links_the_name_is_claimed_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object) -> None:
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "a.txt").write_bytes(b"old")
    download = Download(tmp_path, "a.txt", 3)
    download.write(b"new")
    assert download.finish() == tmp_path / "a (1).txt"
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert (tmp_path / "a (1).txt").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a (1).txt", "a.txt"]


def test_ensure_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_downloads() == tmp_path / "chatwire-downloads"
    folder = ensure_folder("~/chatwire-downloads")
    assert folder == tmp_path / "chatwire-downloads" and folder.is_dir()
    assert folder.stat().st_mode & 0o077 == 0  # private to the user
    assert ensure_folder(folder) == folder  # exists already: fine
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        ensure_folder(tmp_path / "file")


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    # A client killed with SIGKILL cannot remove its .part file; the next start does, but only
    # files of our own pattern that no running transfer could still be writing.
    now = 1_000_000_000.0
    old, recent = now - STALE_PART_AGE - 60, now - 60

    def make(name: str, mtime: float) -> Path:
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
        return path

    stale = make(".chatclient-abc123.part", old)
    live = make(".chatclient-def456.part", recent)  # another client receiving right now
    theirs = make(".other-abc.part", old)
    saved = make("chatclient-abc.part", old)  # a saved file, not ours to remove
    folder = make(".chatclient-dir.part", old)
    folder.unlink()
    folder.mkdir()
    target = make("precious", old)
    link = tmp_path / ".chatclient-link.part"
    link.symlink_to(target)
    os.utime(link, (old, old), follow_symlinks=False)
    assert remove_stale_parts(tmp_path, now=now) == [stale]
    assert not stale.exists()
    for kept in (live, theirs, saved, folder, target, link):
        assert kept.exists() or kept.is_symlink(), kept
    assert remove_stale_parts(tmp_path / "missing") == []
