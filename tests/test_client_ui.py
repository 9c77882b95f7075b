"""The real terminal client (chatclient.ui) in a pseudo-terminal, against the real chatserver
(or a server double where timing matters), read through a small terminal emulator
(tests/terminal.py) that also answers cursor-position requests like a real terminal.

Covered: the nick prompt and the retry after NE, every command, Tab completion, a message
arriving while a line is being typed, receiving files (sanitised names, no overwrite), progress
in the toolbar both ways, the server closing, and clean exits. HOME is a temporary folder.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatwire as cw
from tests.client_doubles import FakePeer, FakeServer, file_relay, header, msg_relay
from tests.support import Peer, running_server, wait_until
from tests.terminal import Terminal

TIMEOUT = 10.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def spawn(home: Path, tmp_path: Path) -> Iterator:
    terminals: list[Terminal] = []

    def start(*args: str, cols: int = 160) -> Terminal:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PROMPT_TOOLKIT_NO_CPR", "NO_COLOR", "COLUMNS", "LINES")
        }
        env.update(HOME=str(home), TERM="xterm-256color", LANG="C.UTF-8", PYTHONUTF8="1")
        terminal = Terminal(
            [sys.executable, "-m", "chatclient", *args], env=env, cwd=str(tmp_path), cols=cols
        )
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


def visible(term: Terminal) -> str:
    return "\n".join(term.screen.lines())


def test_nick_prompt_and_retry_after_refusal(server, spawn) -> None:
    url = server.urls[0]
    with Peer.login(url, "ana") as ana:
        term = spawn(url)
        term.wait_prompt("nick:")
        term.send("a b\r")  # invalid (spec 2.8.3): said at once, asked again
        term.wait_text("a nick may hold only letters")
        term.wait_prompt("nick:")
        term.send("ANA\r")  # taken (equal to ana, spec 2.8.4): NE, then a new connection
        term.wait_text("the nick ANA is taken")
        term.wait_prompt("nick:")
        term.send("bob\r")
        term.wait_text("logged in as bob")
        term.wait_prompt("bob>")
        assert server.stats()["members"] == 2
        ana.send(cw.Message(text="welcome"))
        term.wait_text("<ana> welcome")
        term.send("/quit\r")
        assert term.wait_exit() == 0
        wait_until(lambda: server.stats()["members"] == 1, what="bob to leave")


def test_every_command(server, spawn, home: Path) -> None:
    url = server.urls[0]
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.send("/help\r")
        term.wait_text("/sendFile PATH")
        term.send("/LIST\r")
        term.wait_text("2 online: ")
        assert "ana" in term.screen.text().split("2 online: ")[1].splitlines()[0]
        term.send("/nick ANA\r")
        term.wait_text("nick ANA refused")
        term.send("/Nick zed\r")
        term.wait_text("you are now zed")
        term.wait_prompt("zed>")
        ana.send(cw.ListRequest())
        assert sorted(ana.expect(cw.ListReply).nicks) == ["ana", "zed"]
        term.send("//slash is text\r")
        assert ana.expect(cw.MessageRelay) == cw.MessageRelay(sender="zed", text="/slash is text")
        term.wait_text("<zed> /slash is text")  # our own line, echoed with a timestamp
        term.send("/frobnicate\r")
        term.wait_text("unknown command /frobnicate")
        term.send("/nick two words\r")
        term.wait_text("a nick is one word")
        term.send("/nick way_too_long\r")
        term.wait_text("at most 9 bytes")
        term.send("/clear\r")
        term.wait(lambda s: "unknown command" not in "\n".join(s.lines()), "the screen to clear")
        term.send("/list\r")
        term.wait(lambda s: "2 online" in "\n".join(s.lines()), "the list after /clear")
        term.send("/CLEAN\r")  # the paper's spelling, any case
        term.wait(lambda s: "2 online" not in "\n".join(s.lines()), "the screen to clean")
        term.wait_prompt("zed>")
        term.send("/quit\r")
        assert term.wait_exit() == 0
        assert "disconnected: quit" in term.screen.text()


def test_send_file_with_tab_completion(server, spawn, tmp_path: Path) -> None:
    url = server.urls[0]
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "holiday photo.jpg").write_bytes(b"JPEG" * 1000)
    (folder / "other.txt").write_bytes(b"")
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob", cols=220)
        term.wait_prompt("bob>")
        term.send("/SENDF\t")  # command names complete in any case
        term.wait(lambda s: s.cursor_line() == "bob> /sendFile", "the command to complete")
        term.send(f" {folder}/hol\t")  # paths complete, spaces included
        term.wait(lambda s: s.cursor_line().endswith("holiday photo.jpg"), "the path")
        term.send("\r")
        relay, data = ana.expect_file()
        assert (relay.sender, relay.name, data) == ("bob", "holiday photo.jpg", b"JPEG" * 1000)
        term.wait_text('sent "holiday photo.jpg"')
        term.send(f"/sendFile {folder}/missing.bin\r")
        # Ctrl-D quits too. Between two prompts the terminal is in cooked mode, where the tty
        # itself would swallow a Ctrl-D: wait for the prompt drawn after the error line.
        term.wait(
            lambda s: s.cursor_line() == "bob>" and "cannot send" in s.lines()[s.row - 1],
            "the prompt after the error",
        )
        term.send("\x04")
        assert term.wait_exit() == 0


def test_message_while_typing_keeps_the_line_intact(server, spawn) -> None:
    url = server.urls[0]
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.send("hello wor")
        term.wait(lambda s: s.cursor_line() == "bob> hello wor", "the typed text")
        ana.send(cw.Message(text="interruption \x1b[2J!"))
        term.wait_text("<ana> interruption \\x1b[2J!")
        # The message is printed above the prompt, and the half-typed line is drawn again,
        # unchanged, with the cursor at its end.
        term.wait(lambda s: s.cursor_line() == "bob> hello wor", "the typed text again")
        lines = term.screen.lines()
        message_row = next(i for i, line in enumerate(lines) if "interruption" in line)
        assert message_row < term.screen.row
        assert term.screen.col == len("bob> hello wor")
        term.send("ld\r")
        assert ana.expect(cw.MessageRelay).text == "hello world"
        term.wait_text("<bob> hello world")
        term.send("/quit\r")
        assert term.wait_exit() == 0


def test_receiving_files_sanitised_and_never_overwritten(server, spawn, home: Path) -> None:
    url = server.urls[0]
    downloads = home / "chatwire-downloads"
    downloads.mkdir()
    (downloads / "notes.txt").write_bytes(b"mine")
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob")
        term.wait_prompt("bob>")
        ana.send_file(".bashrc", b"rm -rf ~")
        ana.send_file("notes.txt", b"theirs")
        ana.send_file("CON", b"device")
        term.wait_text(f"as {downloads / 'bashrc'}")
        term.wait_text(f"as {downloads / 'notes (1).txt'}")
        term.wait_text(f"as {downloads / '_CON'}")
        term.send("/quit\r")
        assert term.wait_exit() == 0
    assert sorted(p.name for p in downloads.iterdir()) == [
        "_CON",
        "bashrc",
        "notes (1).txt",
        "notes.txt",
    ]
    assert (downloads / "notes.txt").read_bytes() == b"mine"
    assert (downloads / "bashrc").read_bytes() == b"rm -rf ~"
    assert not (home / ".bashrc").exists()


def test_progress_shows_in_the_toolbar_both_ways(spawn, tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(size)
    half_shown = threading.Event()
    upload_shown = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(file_relay("ana", "movie.mkv", b"m" * 500, size=1000))
        assert half_shown.wait(TIMEOUT)
        peer.send(b"m" * 500)
        assert peer.expect(cw.File).name == "big.bin"  # then stop reading: the client waits
        assert upload_shown.wait(TIMEOUT)
        received = 0
        while received < size:
            event = peer.next()
            assert isinstance(event, cw.FileData), event
            received += len(event.data)
        assert isinstance(peer.next(), cw.FileEnd)
        peer.expect(cw.Quit)

    with FakeServer(script) as fake:
        term = spawn(fake.url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.wait(lambda s: "↓ movie.mkv 500 B of 1000 B (50%)" in s.text(), "download progress")
        half_shown.set()
        term.wait_text('saved "movie.mkv" from ana (1000 B)')
        term.send(f"/sendFile {big}\r")
        term.wait(lambda s: "↑ big.bin" in s.text() and "of 32.0 MiB (" in s.text(), "upload")
        upload_shown.set()
        term.wait_text('sent "big.bin" (32.0 MiB)')
        term.send("/quit\r")
        assert term.wait_exit() == 0


def test_server_closing_is_said_and_ends_the_client(spawn) -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(msg_relay("ana", "closing now"))

    with FakeServer(script) as fake:
        term = spawn(fake.url, "--nick", "bob")
        term.wait_text("<ana> closing now")
        term.wait_text("disconnected: the server closed the connection")
        assert term.wait_exit() == 1


def test_protocol_error_is_said(spawn) -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(header("msg", 1, 1) + b"a")  # then the stream ends inside the frame
        peer.close()

    with FakeServer(script) as fake:
        term = spawn(fake.url, "--nick", "bob")
        term.wait_text("disconnected: the server broke the protocol")
        assert term.wait_exit() == 1


def test_unreachable_server(spawn) -> None:
    term = spawn("tcp://127.0.0.1:1", "--nick", "bob")
    term.wait_text("cannot connect")
    assert term.wait_exit() == 1
