"""A hostile server (a raw-bytes double) against the client: dangerous file names, and nicks and
texts full of terminal escape sequences. Nothing may land outside the download folder
(spec 8.4) and nothing from the network may reach the terminal raw (spec 8.5), in the library,
the plain and JSON output of the program, and the terminal UI in a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatclient import (
    Disconnected,
    FileIncoming,
    FileSaved,
    connect,
)
from chatclient.files import safe_name
from tests.client_doubles import FakePeer, FakeServer, file_relay, list_reply, msg_relay, notice
from tests.support import ROOT
from tests.terminal import Terminal

TIMEOUT = 10.0

# Names that break spec 2.8.5: the decoder refuses the frame, the client closes (spec 6.2).
MALFORMED_NAMES = [
    "../../.bashrc",
    "/etc/passwd",
    "a/b",
    "..\\..\\evil.exe",
    "\x1b]0;pwned\x07.txt",
    "new\nline.txt",
    "gpj\u202eexe.jpg",
    ".",
    "..",
]

# Names that are valid on the wire but dangerous on disk.
DANGEROUS_NAMES = [
    ".bashrc",
    "..bashrc",
    "...",
    ".ssh",
    "CON",
    "con.txt",
    "NUL",
    "-rf",
    "   ",
    " . ",
    "x" * 255,
    "é" * 127,
    "~",
    "$HOME",
    "a:b",
    "*",
    "zero\u200bwidth",
    "bashrc",  # collides with the sanitised .bashrc: must not overwrite it
]

# Sequences a peer could use on a terminal: clear, move, colour, title, hyperlink, C1 CSI,
# device queries, bidi reordering, carriage return.
EVIL_TEXT = (
    "\x1b[2J\x1b[Hcleared \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 \x1b]8;;http://evil/\x1b\\link"
    "\x1b]8;;\x1b\\ \x9b6n \x1bP+q544e\x1b\\ over\rwrite \u202egpj.exe\u202c \x07\x08\x7f end"
)
EVIL_NICKS = ["\x1b[2J\x1b[H", "\x1b]0;p\x07", "\x9b31m", "a\rb"]
RAW_MARKERS = ["\x1b[2J", "\x1b[31mRED", "\x1b]0;pwned", "\x1b]8;;", "\x9b", "\x1bP", "\u202e"]


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.parametrize("name", MALFORMED_NAMES, ids=repr)
def test_malformed_names_close_the_connection_and_save_nothing(tmp_path: Path, name: str) -> None:
    downloads = tmp_path / "home" / "downloads"

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(file_relay("eve", name.encode(), b"#!/bin/sh\necho pwned\n"))
        peer.wait_closed()

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana", downloads=downloads)
        events = list(client.events(TIMEOUT))
    assert not any(isinstance(e, FileIncoming | FileSaved) for e in events)
    end = events[-1]
    assert isinstance(end, Disconnected) and not end.expected
    assert "broke the protocol" in end.reason and "2.8.5" in end.reason
    assert all_files(tmp_path) == []  # nothing anywhere, not even a temporary file


def test_dangerous_valid_names_stay_in_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    (downloads / "ssh").symlink_to(outside)  # a trap: saving "ssh" must not follow it

    def script(peer: FakePeer) -> None:
        peer.login()
        for index, name in enumerate(DANGEROUS_NAMES):
            peer.send(file_relay("eve", name, f"content {index}".encode()))
        # then the server closes, which ends the client's events

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana", downloads=downloads)
        saved = [e for e in client.events(TIMEOUT) if isinstance(e, FileSaved)]
        client.close()
    assert [e.name for e in saved] == DANGEROUS_NAMES
    paths = [Path(e.path) for e in saved]
    assert len(set(paths)) == len(paths)  # no file overwrote another
    for index, (event, path) in enumerate(zip(saved, paths, strict=True)):
        assert path.parent == downloads, path
        assert path.resolve().parent == downloads.resolve()
        assert not path.is_symlink()
        assert path.read_bytes() == f"content {index}".encode()
        assert path.name.startswith(safe_name(event.name).rsplit(".", 1)[0][:50])
        assert len(path.name.encode()) <= 255
        assert not path.name.startswith((".", "-", " "))
    assert outside.read_bytes() == b"keep"
    on_disk = set(all_files(tmp_path))
    assert on_disk == {*paths, outside, downloads / "ssh"}  # nothing else, nowhere else
    assert not (home / ".bashrc").exists()


def run_cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chatclient", url, "--nick", "me", "--listen", *args],
        capture_output=True,
        env={**os.environ, "HOME": str(home), "PYTHONUTF8": "1"},
        cwd=ROOT,
        timeout=TIMEOUT * 2,
        check=False,
    )


def close_after_the_end(peer: FakePeer) -> None:
    peer.login()
    for nick in EVIL_NICKS:
        peer.send(msg_relay(nick, EVIL_TEXT))
    peer.send(notice(EVIL_TEXT))
    peer.send(file_relay(EVIL_NICKS[0], ".bashrc", b"echo pwned"))
    peer.send(msg_relay("ana", "the end"))
    # then the server closes: the client prints the end and exits


def test_plain_output_holds_no_raw_control(tmp_path: Path) -> None:
    with FakeServer(close_after_the_end) as fake:
        result = run_cli(tmp_path, fake.url)
    out = result.stdout.decode("utf-8")
    assert "<ana> the end" in out
    for marker in RAW_MARKERS:
        assert marker not in out, marker
    assert not any(c < 0x20 and c != 0x0A for c in result.stdout)  # no C0 but line feeds
    assert "\\x1b]0;pwned\\x07" in out  # shown, as visible escapes
    assert "<\\x1b[2J\\x1b[H> " in out
    assert "\\x9b6n" in out and "\\u202egpj.exe" in out
    saved = tmp_path / "chatwire-downloads" / "bashrc"
    assert saved.read_bytes() == b"echo pwned"
    assert not (tmp_path / ".bashrc").exists()


def test_json_output_is_ascii_and_exact(tmp_path: Path) -> None:
    with FakeServer(close_after_the_end) as fake:
        result = run_cli(tmp_path, fake.url, "--json")
    assert result.stdout.isascii()
    assert not any(c < 0x20 and c != 0x0A for c in result.stdout)
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    messages = [r for r in records if r["event"] == "message"]
    assert [m["sender"] for m in messages[:4]] == EVIL_NICKS  # programs get the exact text
    assert messages[0]["text"] == EVIL_TEXT
    saved = next(r for r in records if r["event"] == "file-saved")
    assert saved["name"] == ".bashrc" and saved["sender"] == EVIL_NICKS[0]
    assert Path(saved["path"]).parent == tmp_path / "chatwire-downloads"


def test_terminal_ui_shows_escapes_and_passes_nothing_raw(tmp_path: Path) -> None:
    with FakeServer(close_after_the_end) as fake:
        env = {k: v for k, v in os.environ.items() if k not in ("PROMPT_TOOLKIT_NO_CPR",)}
        env.update(HOME=str(tmp_path), TERM="xterm-256color", LANG="C.UTF-8", PYTHONUTF8="1")
        term = Terminal(
            [sys.executable, "-m", "chatclient", fake.url, "--nick", "me"],
            env=env,
            cwd=str(tmp_path),
            cols=400,
        )
        try:
            term.wait_text("<ana> the end")
            assert term.wait_exit() == 1  # the server closed
        finally:
            term.close()
    raw = term.raw_output()
    for marker in RAW_MARKERS:
        assert marker not in raw, marker
    assert "pwned" not in " ".join(term.screen.titles)  # the window title was never set
    text = term.screen.text()
    assert "\\x1b]0;pwned\\x07" in text and "<\\x1b[2J\\x1b[H>" in text
    assert "over\\x0dwrite" in text  # the carriage return did not hide "over"
    assert f"as {tmp_path / 'chatwire-downloads' / 'bashrc'}" in text
    assert not (tmp_path / ".bashrc").exists()


def test_hostile_user_list_is_shown_safely(tmp_path: Path) -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.next()  # the list request
        peer.send(list_reply(*EVIL_NICKS))

    with FakeServer(script) as fake:
        result = subprocess.run(
            [sys.executable, "-m", "chatclient", fake.url, "--nick", "me"],
            input=b"/list\n",
            capture_output=True,
            env={**os.environ, "HOME": str(tmp_path)},
            cwd=ROOT,
            timeout=TIMEOUT * 2,
            check=False,
        )
    out = result.stdout.decode()
    assert "4 online: \\x1b[2J\\x1b[H, \\x1b]0;p\\x07, \\x9b31m, a\\x0db" in out
    assert not any(c < 0x20 and c != 0x0A for c in result.stdout)
