"""The real terminal client (chatclient.ui) in a pseudo-terminal, against the real chatserver
(or a server double where timing matters), read through a small terminal emulator
(tests/terminal.py) that also answers cursor-position requests like a real terminal.

Covered: the nick prompt and the retry after NE, every command, Tab completion, a message
arriving while a line is being typed, receiving files (sanitised names, no overwrite), progress
in the toolbar both ways, the server closing, and clean exits. HOME is a temporary folder.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
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

    def start(*args: str, cols: int = 160, extra_env: dict[str, str] | None = None) -> Terminal:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PROMPT_TOOLKIT_NO_CPR", "NO_COLOR", "COLUMNS", "LINES")
        }
        env.update(HOME=str(home), TERM="xterm-256color", LANG="C.UTF-8", PYTHONUTF8="1")
        env.update(extra_env or {})
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


# "1.5 MiB of 32.0 MiB (4%), 20.3 MiB/s": real progress, not the placeholder drawn before the
# first byte ("0 B of ... (0%), -"), with a rate measured from the time now.
PROGRESS = re.compile(
    r"(?P<done>[0-9.]+) (?P<unit>B|KiB|MiB|GiB) of (?P<size>[0-9.]+ (?:B|KiB|MiB|GiB)) "
    r"\((?P<percent>[0-9]+)%\), (?P<rate>[0-9.]+) (?:B|KiB|MiB|GiB)/s"
)


def moving(screen, arrow_name: str) -> re.Match[str] | None:
    """The progress of ``arrow_name`` ("↑ big.bin") in the toolbar if bytes have moved."""
    for line in screen.lines():
        if arrow_name in line:
            match = PROGRESS.match(line.split(arrow_name + " ", 1)[1])
            if match and float(match["done"]) > 0 and float(match["rate"]) > 0:
                return match
    return None


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
        term.wait(lambda s: moving(s, "↓ movie.mkv") is not None, "download progress")
        match = moving(term.screen, "↓ movie.mkv")
        assert match is not None
        assert (match["done"], match["size"], match["percent"]) == ("500", "1000 B", "50")
        # The sender went quiet: the toolbar is redrawn on a timer and says so.
        term.wait(
            lambda s: "↓ movie.mkv 500 B of 1000 B (50%), stalled for " in s.text(),
            "the download to show as stalled",
        )
        half_shown.set()
        term.wait_text('saved "movie.mkv" from ana (1000 B)')
        term.send(f"/sendFile {big}\r")
        term.wait(lambda s: moving(s, "↑ big.bin") is not None, "upload progress")
        match = moving(term.screen, "↑ big.bin")
        assert match is not None and match["size"] == "32.0 MiB"
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


def test_a_byte_that_is_not_utf8_is_refused_and_the_next_line_is_sent(server, spawn) -> None:
    # A Latin-1 terminal sends "é" as the byte 0xe9; prompt_toolkit reads with surrogateescape.
    url = server.urls[0]
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.send_bytes(b"caf\xe9\r")
        term.wait_text("not sent: the text is not valid UTF-8")
        assert "0xe9" in term.screen.text()
        term.wait_prompt("bob>")
        term.send("second line\r")
        assert ana.expect(cw.MessageRelay).text == "second line"  # the bad line never went
        term.send("/quit\r")
        assert term.wait_exit() == 0
    assert "Traceback" not in term.screen.text()


def test_send_file_on_a_fifo_is_refused_without_freezing(server, spawn, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    url = server.urls[0]
    with Peer.login(url, "ana"):
        term = spawn(url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.send(f"/sendFile {fifo}\r")
        term.wait_text("a FIFO (named pipe), not a regular file", timeout=5)
        term.send("/list\r")  # the UI still answers
        term.wait_text("2 online")
        term.send("/quit\r")
        assert term.wait_exit() == 0


def _stalling_server(release: threading.Event):
    """A server double that reads the first file's header, then stops reading."""

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.File)
        release.wait(TIMEOUT * 3)
        peer.wait_closed()

    return script


@pytest.mark.parametrize(("keys", "again"), [("/quit\r", ""), ("\x03", "again "), ("\x04", "")])
def test_quitting_during_a_stalled_upload_says_so_and_ctrl_c_aborts(
    spawn, tmp_path: Path, keys: str, again: str
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)
    release = threading.Event()
    with FakeServer(_stalling_server(release)) as fake:
        try:
            term = spawn(fake.url, "--nick", "bob", cols=220)
            term.wait_prompt("bob>")
            term.send(f"/sendFile {big}\r")
            term.wait(lambda s: moving(s, "↑ big.bin") is not None, "the upload to start")
            # A second file of the same name has its own entry in the toolbar.
            term.send(f"/sendFile {big}\r")
            term.wait(
                lambda s: sum(line.count("↑ big.bin") for line in s.lines()) == 2,
                "two entries for two uploads of one name",
            )
            term.wait_prompt("bob>")
            term.send(keys)
            term.wait_text(
                f"waiting for big.bin, big.bin to finish sending; press Ctrl-C {again}to abort"
            )
            started = time.monotonic()
            term.send("\x03")
            assert term.wait_exit(timeout=5) == 130
            assert time.monotonic() - started < 4
        finally:
            release.set()


def test_ctrl_c_clears_the_line_then_quits(server, spawn) -> None:
    url = server.urls[0]
    term = spawn(url, "--nick", "bob")
    term.wait_prompt("bob>")
    term.send("half a thought")
    term.wait(lambda s: s.cursor_line() == "bob> half a thought", "the typed text")
    term.send("\x03")
    term.wait(lambda s: s.cursor_line() == "bob>", "the line to be cleared")
    assert term.child.isalive()
    term.send("\x03")
    assert term.wait_exit() == 0
    assert "disconnected: quit" in term.screen.text()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "terminal closed"])
def test_a_signal_leaves_promptly_and_removes_the_partial_file(spawn, home: Path, how: str) -> None:
    # "terminal closed" is a real hangup, not only the signal: the pty's master side goes, so
    # whatever the client still writes to it fails; it must leave all the same.
    release = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(file_relay("ana", "movie.mkv", b"m" * 500, size=1000))
        release.wait(TIMEOUT)
        peer.wait_closed()

    downloads = home / "chatwire-downloads"
    with FakeServer(script) as fake:
        try:
            term = spawn(fake.url, "--nick", "bob")
            term.wait(lambda s: "↓ movie.mkv 500 B" in s.text(), "the download to start")
            assert [p.name.endswith(".part") for p in downloads.iterdir()] == [True]
            if how == "terminal closed":
                assert term.hang_up() == 0
            else:
                started = time.monotonic()
                term.kill(getattr(signal, how))
                assert term.wait_exit(timeout=5) == 0
                assert time.monotonic() - started < 4  # the quit waits at most 1 s
        finally:
            release.set()
    assert list(downloads.iterdir()) == []


def test_the_unsent_line_is_shown_when_the_server_goes(spawn) -> None:
    typed = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        typed.wait(TIMEOUT)  # then the server dies

    with FakeServer(script) as fake:
        term = spawn(fake.url, "--nick", "bob")
        term.wait_prompt("bob>")
        term.send("a long thought I was typing")
        term.wait(lambda s: s.cursor_line().endswith("I was typing"), "the typed text")
        typed.set()
        term.wait_text("disconnected: the server closed the connection")
        term.wait_text("here it is to copy:")
        assert term.wait_exit() == 1
        lines = term.screen.text().splitlines()
        index = next(i for i, line in enumerate(lines) if "here it is to copy:" in line)
        assert lines[index + 1].endswith(" a long thought I was typing")


SGR = re.compile(r"\x1b\[([0-9;]*)m")
TIME = re.compile(r"^\d\d:\d\d:\d\d <ana> hello$", re.MULTILINE)


def colours(raw: str) -> list[str]:
    """The SGR colour parameters (foreground or background) in ``raw``."""
    found = []
    for match in SGR.finditer(raw):
        params = [int(p) if p else 0 for p in match.group(1).split(";")]
        i = 0
        while i < len(params):
            p = params[i]
            if p in (38, 48):
                found.append(";".join(map(str, params[i : i + 3])))
                i += 5 if i + 1 < len(params) and params[i + 1] == 2 else 3
                continue
            if 30 <= p <= 37 or 40 <= p <= 47 or 90 <= p <= 97 or 100 <= p <= 107:
                found.append(str(p))
            i += 1
    return found


@pytest.mark.parametrize(
    ("args", "env", "coloured"),
    [((), {}, True), (("--no-color",), {}, False), ((), {"NO_COLOR": "1"}, False)],
)
def test_timestamps_and_nick_colours(server, spawn, args, env, coloured: bool) -> None:
    url = server.urls[0]
    with Peer.login(url, "ana") as ana:
        term = spawn(url, "--nick", "bob", *args, extra_env=env)
        term.wait_prompt("bob>")
        ana.send(cw.Message(text="hello"))
        term.wait(lambda s: TIME.search(s.text()) is not None, "a timestamped message")
        raw = term.raw_output()
        nick = re.search(r"<\x1b\[([0-9;]*)mana\x1b\[0m> hello", raw)
        assert nick is not None, "the nick is not drawn in a style of its own"
        if coloured:
            assert colours(f"\x1b[{nick[1]}m"), f"the nick has no colour: {nick[1]!r}"
        else:
            assert colours(raw) == [], "colour codes despite --no-color / NO_COLOR"
        term.send("/quit\r")
        assert term.wait_exit() == 0
