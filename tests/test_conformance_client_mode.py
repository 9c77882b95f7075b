"""The client-side kit (chatwire/conformance/client_mode.py): a scripted server that a client
under test connects to. The reference client library (chatclient) must pass every MUST case;
small scripted clients built on chatwire, each with one defect, must fail the case for it."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import chatwire as cw
from chatwire.conformance import CLIENT, ClientKit, ClientOptions, Run, Verdict, run_client_kit
from chatwire.transport import parse_endpoint
from tests.support import ROOT, Peer

OPTIONS = ClientOptions(wait=10.0, hold=0.2, prompts=False)


@contextlib.contextmanager
def client_kit(options: ClientOptions = OPTIONS) -> Iterator[tuple[str, list[Run]]]:
    """A client kit listening on 127.0.0.1 (any port) and playing its script on a thread."""
    kit = ClientKit(parse_endpoint("tcp://127.0.0.1:0"), options, None)
    runs: list[Run] = []
    thread = threading.Thread(target=lambda: runs.append(run_client_kit(kit, CLIENT.cases())))
    thread.start()
    try:
        yield kit.url, runs
    finally:
        thread.join(timeout=60)
        assert not thread.is_alive(), "the client kit did not finish"


def _verdicts(run: Run) -> dict[str, Verdict]:
    return {result.case.id: result.verdict for result in run.results}


def _failures(run: Run) -> dict[str, str]:
    return {r.case.id: r.actual for r in run.results if r.verdict is Verdict.FAIL}


def test_reference_client_library_passes(tmp_path: Path) -> None:
    chatclient = pytest.importorskip("chatclient")
    upload = tmp_path / "upload.txt"
    upload.write_bytes(b"some file content\n")
    with client_kit() as (url, runs):
        with pytest.raises(chatclient.LoginRefusedError):
            chatclient.connect(url, "me", downloads=tmp_path / "in")
        client = chatclient.connect(url, "me", downloads=tmp_path / "in")
        assert set(client.list_users().result(timeout=10)) >= {"ana", "bob", "me"}
        assert client.change_nick("ana").result(timeout=10) is False
        assert client.change_nick("me2").result(timeout=10) is True
        client.send_text("hello").result(timeout=10)
        client.send_file(upload).result(timeout=10)
        client.quit(timeout=10)
    run = runs[0]
    assert not _failures(run), _failures(run)
    verdicts = _verdicts(run)
    assert verdicts["client-file"] is Verdict.PASS
    assert verdicts["client-reads-after-quit"] is Verdict.PASS
    assert (tmp_path / "in" / "hello.txt").read_bytes() == b"hello, world\n"


def _reply(peer: Peer) -> cw.Event:
    # The next reply, relays and notices (which the kit sends before every reply) skipped.
    while True:
        event = peer.next()
        if isinstance(event, cw.Accepted | cw.Refused | cw.NickChanged | cw.ListReply):
            return event
        if isinstance(event, cw.FileRelay):
            peer.next()  # data (or end)
            if not isinstance(peer.seen[-1], cw.FileEnd):
                peer.next()


def scripted_client(
    url: str,
    *,
    early: bool = False,
    reconnect: bool = True,
    nul: bool = False,
    after_quit: bool = False,
) -> None:
    """A client doing the kit's script, with one defect when asked."""
    first = Peer(url, timeout=5)
    first.send(cw.Login(nick="me"))
    if early:
        first.send_raw(cw.encode(cw.ListRequest()))  # before the answer: forbidden (3.1.1)
    first.expect(cw.Refused)
    first.close()
    if not reconnect:
        return
    with (
        Peer(url, timeout=5) as peer,
        contextlib.suppress(AssertionError, OSError, cw.ProtocolError),
    ):
        peer.send(cw.Login(nick="me"))
        assert isinstance(_reply(peer), cw.Accepted)
        peer.send(cw.ListRequest())
        assert isinstance(_reply(peer), cw.ListReply)
        peer.send(cw.NickRequest(nick="ana"))
        assert isinstance(_reply(peer), cw.Refused)
        peer.send(cw.NickRequest(nick="me2"))
        assert isinstance(_reply(peer), cw.NickChanged)
        if nul:
            peer.send_raw(b"msg 5\x00\x00\x00\x00\x00hello")
        else:
            peer.send(cw.Message(text="hello"))
        peer.send(cw.Message(text="skip"))
        peer.send(cw.Quit())
        if after_quit:
            peer.send_raw(cw.encode(cw.Message(text="too late")))
        while not isinstance(peer.next(), cw.ConnectionClosed):
            pass  # relays the kit sent before it read quit, then its close


@pytest.mark.parametrize(
    ("defect", "client", "catcher"),
    [
        ("sends before ACC", lambda url: scripted_client(url, early=True), "client-waits-for-acc"),
        (
            "no new login after NE",
            lambda url: scripted_client(url, reconnect=False),
            "client-logs-in-again",
        ),
        ("NUL-padded header", lambda url: scripted_client(url, nul=True), "client-well-formed"),
        ("sends after quit", lambda url: scripted_client(url, after_quit=True), "client-quit"),
    ],
)
def test_faulty_clients_fail_their_case(
    defect: str, client: Callable[[str], None], catcher: str
) -> None:
    options = ClientOptions(wait=3.0, hold=0.2, prompts=False)
    with client_kit(options) as (url, runs):
        client(url)
    failures = _failures(runs[0])
    assert catcher in failures, f"{defect}: {failures}"


def test_a_well_behaved_scripted_client_passes() -> None:
    with client_kit() as (url, runs):
        scripted_client(url)
    run = runs[0]
    assert not _failures(run), _failures(run)
    assert _verdicts(run)["client-file"] is Verdict.SKIP  # it skipped the optional step


def test_command_line_client_mode(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "chatwire.conformance",
        "client",
        "--port",
        "0",
        "--wait",
        "10",
        "--hold",
        "0.2",
        "--json",
        str(tmp_path / "c.json"),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, line
        scripted_client(match.group(1))
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, out + err
    assert "[kit] next: type /list" in out
    assert out.strip().splitlines()[-1].startswith("12 passed, 0 failed, 2 skipped")
    assert (tmp_path / "c.json").is_file()
