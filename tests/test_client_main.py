"""The ``chatclient`` program in scripted mode (chatclient.__main__), run as a subprocess with a
temporary HOME against the real chatserver: --send, --send-file, lines from stdin, --json,
--listen, TLS options, and the documented exit codes."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

import chatwire as cw
from chatwire.transport import parse_endpoint
from tests.client_doubles import FakePeer, FakeServer, file_relay, msg_relay
from tests.support import ROOT, Peer, running_server, wait_until
from tests.terminal import Terminal

TIMEOUT = 15.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def run(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatclient", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(home),
        cwd=ROOT,
        timeout=TIMEOUT,
        check=False,
    )


class Running:
    """A chatclient subprocess whose stdout lines are collected as they come."""

    def __init__(self, home: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatclient", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(home),
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_json(self, event: str) -> dict[str, Any]:
        """The next JSON line whose ``event`` is ``event`` (others skipped)."""
        while True:
            try:
                record = json.loads(self.lines.get(timeout=TIMEOUT))
            except queue.Empty:
                raise AssertionError(f"no {event!r} line within {TIMEOUT} s") from None
            if record["event"] == event:
                return record

    def write(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str]:
        """Close stdin, wait for the exit; (code, stderr)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(TIMEOUT)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


def test_send_one_message_and_exit(server, home: Path) -> None:
    url = server.urls[0]
    # Temporary files a client killed with SIGKILL left a day ago are swept at start.
    downloads = home / "chatwire-downloads"
    downloads.mkdir()
    stale, live = downloads / ".chatclient-x1y2z3.part", downloads / ".chatclient-a1b2c3.part"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    os.utime(stale, (1e9, 1e9))
    with Peer.login(url, "bob") as bob:
        result = run(home, url, "--nick", "ana", "--send", "hello", "--send", "again")
        assert result.returncode == 0, result.stderr
        assert bob.expect(cw.MessageRelay) == cw.MessageRelay(sender="ana", text="hello")
        assert bob.expect(cw.MessageRelay).text == "again"
    assert (home / "chatwire-downloads").is_dir()  # created at start (the paper)
    assert not stale.exists() and live.exists()


def test_send_a_file_and_exit(server, home: Path, tmp_path: Path) -> None:
    url = server.urls[0]
    data = os.urandom(700_000)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    with Peer.login(url, "bob") as bob:
        result = run(home, url, "-n", "ana", "--send-file", str(path), "--send", "sent it")
        assert result.returncode == 0, result.stderr
        relay, received = bob.expect_file()
        assert (relay.name, received) == ("report.pdf", data)
        assert bob.expect(cw.MessageRelay).text == "sent it"


def test_lines_from_stdin_with_commands_and_json(server, home: Path, tmp_path: Path) -> None:
    url = server.urls[0]
    (tmp_path / "a b.txt").write_bytes(b"spaced")
    script = "\n".join(
        [
            "hello from a script",
            "//not a command",
            "/LIST",
            "/nick bob",
            "/Nick zed",
            f"/sendFile {tmp_path / 'a b.txt'}",
            "/frobnicate",
            "",
        ]
    )
    with Peer.login(url, "bob") as bob:
        result = run(home, url, "--nick", "ana", "--json", stdin=script)
        assert result.returncode == 0, result.stderr
        assert bob.expect(cw.MessageRelay).text == "hello from a script"
        assert bob.expect(cw.MessageRelay).text == "/not a command"
        relay, data = bob.expect_file()
        assert (relay.sender, relay.name, data) == ("zed", "a b.txt", b"spaced")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [r["event"] for r in records]
    assert kinds[-1] == "disconnected" and records[-1]["expected"] is True
    assert sorted(next(r for r in records if r["event"] == "users")["nicks"]) == ["ana", "bob"]
    assert {"event": "nick-refused", "nick": "bob"}.items() <= records[
        kinds.index("nick-refused")
    ].items()
    assert records[kinds.index("nick")]["new"] == "zed"
    assert "file-sent" in kinds
    assert "unknown command /frobnicate" in result.stderr
    # The same problems, for the program reading the JSON, on stdout.
    errors = [r["message"] for r in records if r["event"] == "error"]
    assert len(errors) == 1 and "unknown command /frobnicate" in errors[0]


def test_listen_prints_json_events_until_terminated(server, home: Path) -> None:
    url = server.urls[0]
    client = Running(home, url, "--nick", "ana", "--listen", "--json")
    try:
        wait_until(lambda: server.stats()["members"] == 1, what="the client to log in")
        with Peer.login(url, "bob") as bob:
            bob.send(cw.Message(text="hi"))
            assert client.next_json("message") | {"time": 0} == {
                "event": "message",
                "time": 0,
                "sender": "bob",
                "text": "hi",
            }
            bob.send_file("x.txt", b"data")
            saved = client.next_json("file-saved")
            assert Path(saved["path"]) == home / "chatwire-downloads" / "x.txt"
            assert Path(saved["path"]).read_bytes() == b"data"
        client.process.send_signal(signal.SIGTERM)
        code, _ = client.finish()
        assert code == 0
    finally:
        client.kill()


def test_plain_output_when_not_a_terminal(server, home: Path) -> None:
    url = server.urls[0]
    client = Running(home, url, "--nick", "ana", "--downloads", str(home / "dl"))
    try:
        wait_until(lambda: server.stats()["members"] == 1, what="the client to log in")
        with Peer.login(url, "bob") as bob:
            bob.send(cw.Message(text="two\nlines"))
            line = client.lines.get(timeout=TIMEOUT)
            assert line.endswith("<bob> two")
            assert client.lines.get(timeout=TIMEOUT) == "    lines"
        code, _ = client.finish()  # end of stdin: quit
        assert code == 0
        assert (home / "dl").is_dir() and not (home / "chatwire-downloads").exists()
    finally:
        client.kill()


def test_server_closing_is_reported_with_exit_code_1(home: Path) -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(msg_relay("bob", "bye"))  # then the server closes

    with FakeServer(script) as fake:
        result = run(home, fake.url, "--nick", "ana", "--listen")
    assert result.returncode == 1
    assert "<bob> bye" in result.stdout
    assert "disconnected: the server closed the connection" in result.stdout


def test_the_end_of_the_connection_ends_a_script_still_reading_stdin(home: Path) -> None:
    # The main thread blocks reading stdin, which the server's close does not interrupt: the
    # program must still notice, say so and exit 1, with its stdin left open.
    with running_server() as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatclient", server.urls[0], "--nick", "reader"],
            cwd=ROOT,
            env=env_for(home),
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_until(lambda: server.stats()["members"] == 1, what="the login")
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout))  # type: ignore[arg-type]
    reader.start()
    try:  # the server has stopped; stdin is still open
        assert process.wait(10) == 1
    finally:
        process.kill()
        process.wait()
        reader.join(5)
    assert "disconnected: the server closed the connection" in "".join(output)


def test_exit_codes(server, home: Path, tmp_path: Path) -> None:
    url = server.urls[0]
    with Peer.login(url, "bob"):
        refused = run(home, url, "--nick", "BOB", "--send", "x")
        assert refused.returncode == 3
        assert "refused the nick" in refused.stderr
    assert run(home, url, "--nick", "ana", "--send-file", str(tmp_path / "nope")).returncode == 4
    closed = parse_endpoint(url).with_port(1).url
    unreachable = run(home, closed, "--nick", "ana", "--send", "x")
    assert unreachable.returncode == 1 and "cannot connect" in unreachable.stderr
    assert run(home, "ftp://x", "--nick", "ana").returncode == 2
    assert run(home, url, "--send", "x").returncode == 2  # no --nick and no terminal
    assert run(home, url, "--ca", "x.pem", "--nick", "a", "--send", "x").returncode == 2
    assert run(home, "--bogus").returncode == 2
    usage = run(home, "--help")
    assert usage.returncode == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert f"\n  {code}" in usage.stdout


def test_tls_options(home: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with running_server(listen=[f"tls://127.0.0.1:0?cert={pem}&key={pem}"]) as srv:
        url = srv.urls[0]
        with Peer.login(f"{url}?ca={ca_file}", "bob") as bob:
            untrusted = run(home, url, "--nick", "ana", "--send", "x")
            assert untrusted.returncode == 1  # the system CAs do not know ours
            ok = run(home, url, "--ca", str(ca_file), "--nick", "ana", "--send", "secret")
            assert ok.returncode == 0, ok.stderr
            assert bob.expect(cw.MessageRelay).text == "secret"
            insecure = run(home, url, "--insecure", "--nick", "eve", "--send", "x")
            assert insecure.returncode == 0


def test_console_script_is_installed(server, home: Path) -> None:
    script = Path(sys.executable).parent / "chatclient"
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0 and "chatclient" in result.stdout


def test_text_that_is_not_utf8_is_refused_and_the_rest_is_sent(server, home: Path) -> None:
    # printf 'caf\xe9\nsecond line\n' | chatclient --nick latin: the first line cannot go
    # (spec 2.8.2); the script says so, goes on with the next line, and ends with code 5.
    url = server.urls[0]
    with Peer.login(url, "bob") as bob:
        result = subprocess.run(
            [sys.executable, "-m", "chatclient", url, "--nick", "latin", "--json"],
            input=b"caf\xe9\nsecond line\n",
            capture_output=True,
            env={**env_for(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )
        assert bob.expect(cw.MessageRelay).text == "second line"
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 5, stderr
        assert "Traceback" not in stderr
        assert "not valid UTF-8" in stderr and "0xe9" in stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        errors = [r for r in records if r["event"] == "error"]
        assert len(errors) == 1 and "0xe9" in errors[0]["message"]
        # --send arguments come through argv, decoded with surrogateescape too.
        argv = subprocess.run(
            [
                sys.executable.encode(),
                b"-m",
                b"chatclient",
                url.encode(),
                b"-n",
                b"latin",
                b"--send",
                b"caf\xe9",
                b"--send",
                b"after",
            ],
            capture_output=True,
            env=env_for(home),
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )
        assert argv.returncode == 5, argv.stderr
        assert bob.expect(cw.MessageRelay).text == "after"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_quits_promptly_and_removes_the_partial_file(home: Path, signum: int) -> None:
    release = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(file_relay("bob", "movie.mkv", b"m" * 500, size=1000))
        release.wait(TIMEOUT)  # the rest never comes while the client runs
        peer.wait_closed()

    downloads = home / "dl"
    with FakeServer(script) as fake:
        client = Running(home, fake.url, "-n", "ana", "--listen", "--json", "-d", str(downloads))
        try:
            client.next_json("file-incoming")
            wait_until(lambda: any(downloads.iterdir()), what="the temporary file")
            started = time.monotonic()
            client.process.send_signal(signum)
            code, stderr = client.finish()
            assert code == 0, stderr
            assert time.monotonic() - started < 4  # was about 7 s
            assert client.next_json("file-discarded")["name"] == "movie.mkv"
        finally:
            release.set()
            client.kill()
    assert list(downloads.iterdir()) == []


def test_without_nick_on_a_terminal_it_asks_even_when_output_is_a_pipe(
    server, home: Path, tmp_path: Path
) -> None:
    # chatclient | tee log: stdin is the terminal, stdout is not; ask there, as the UI would.
    url = server.urls[0]
    log = tmp_path / "log"
    command = f"exec {shlex.quote(sys.executable)} -m chatclient {url} > {shlex.quote(str(log))}"
    with Peer.login(url, "bob") as bob:
        term = Terminal(["/bin/sh", "-c", command], env=env_for(home), cwd=str(ROOT))
        try:
            term.wait_prompt("nick:")
            term.send("a b\r")
            term.wait_text("a nick may hold only letters")
            term.wait_prompt("nick:")
            term.send("BOB\r")  # taken: asked again, on a new connection (spec 8.1)
            term.wait_text("refused the nick 'BOB'")
            term.wait_prompt("nick:")
            term.send("ana\r")
            wait_until(lambda: server.stats()["members"] == 2, what="the login")
            term.send("hello from a pipe\r")
            assert bob.expect(cw.MessageRelay) == cw.MessageRelay(
                sender="ana", text="hello from a pipe"
            )
            term.send("\x04")  # end of input: quit
            assert term.wait_exit() == 0
        finally:
            term.close()
    assert "disconnected: quit" in log.read_text()


def test_a_file_the_server_stops_reading_ends_the_script_with_code_1(
    home: Path, tmp_path: Path
) -> None:
    # The script used to wait for its uploads without limit before quitting: forever, if the
    # server stopped reading. quit() now gives up after 5 s without progress.
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)
    release = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.File)
        release.wait(TIMEOUT)
        peer.wait_closed()

    with FakeServer(script) as fake:
        try:
            result = run(home, fake.url, "--nick", "ana", "--send-file", str(big))
        finally:
            release.set()
    assert result.returncode == 1, result.stderr
    assert "'big.bin' was cut short" in result.stdout
