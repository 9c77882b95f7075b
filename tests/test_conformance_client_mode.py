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
from chatwire.conformance.client_mode import LONG_TEXT, MALFORMED
from chatwire.transport import parse_endpoint
from tests.support import ROOT, Peer, wait_until

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


def _problems(run: Run) -> dict[str, str]:
    bad = (Verdict.FAIL, Verdict.NON_STRICT, Verdict.ERROR)
    return {r.case.id: r.actual for r in run.results if r.verdict in bad}


def test_reference_client_library_passes(tmp_path: Path) -> None:
    chatclient = pytest.importorskip("chatclient")
    upload = tmp_path / "upload.txt"
    upload.write_bytes(b"some file content\n")
    downloads = tmp_path / "in"
    downloads.mkdir()
    options = ClientOptions(wait=10.0, hold=0.2, prompts=False, downloads=str(downloads))
    with client_kit(options) as (url, runs):
        with pytest.raises(chatclient.LoginRefusedError):
            chatclient.connect(url, "me", downloads=downloads)
        client = chatclient.connect(url, "me", downloads=downloads)
        assert set(client.list_users().result(timeout=10)) >= {"ana", "bob", "me"}
        assert client.change_nick("ana").result(timeout=10) is False
        assert client.change_nick("me2").result(timeout=10) is True
        client.send_text("hello").result(timeout=10)
        client.send_text(LONG_TEXT).result(timeout=10)
        client.send_file(upload).result(timeout=10)
        client.quit(timeout=10)
        # The last step: the kit sends a malformed frame, which must end the connection.
        third = chatclient.connect(url, "me", downloads=downloads)
        wait_until(lambda: third.closed, 10, "the client library to close on a malformed frame")
    run = runs[0]
    assert not _problems(run), _problems(run)
    verdicts = _verdicts(run)
    for case_id in (
        "client-file",
        "client-reads-after-quit",
        "client-long-text",
        "client-long-text-cut",
        "client-saves-files",
        "client-closes-on-malformed",
        "client-takes-relays",
    ):
        assert verdicts[case_id] is Verdict.PASS, case_id
    assert (downloads / "hello.txt").read_bytes() == b"hello, world\n"


def _chatclient(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatclient", "--nick", "me", "--timeout", "5", *args, url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_reference_chatclient_program_passes_in_scripted_mode(tmp_path: Path) -> None:
    # What docs/conformance.md tells an operator to run, with the real chatclient program.
    long_text = tmp_path / "long.txt"
    downloads = tmp_path / "in"
    downloads.mkdir()
    upload = tmp_path / "upload.txt"
    upload.write_bytes(b"some file content\n")
    options = ClientOptions(
        wait=20.0,
        hold=0.2,
        prompts=False,
        long_text_file=str(long_text),
        downloads=str(downloads),
    )
    with client_kit(options) as (url, runs):
        refused = _chatclient(url, "-d", str(downloads))  # step 1: NE, exit status 3
        assert refused.returncode == 3, refused.stderr
        script = ["/list", "/nick ana", "/nick me2", "hello"]
        script += [long_text.read_text(encoding="utf-8").rstrip("\n"), f"/sendFile {upload}"]
        done = _chatclient(url, "-d", str(downloads), stdin="\n".join([*script, "/quit", ""]))
        assert done.returncode == 0, done.stderr
        hostile = _chatclient(url, "-d", str(downloads), "--listen")  # step 10
        assert hostile.returncode == 1, hostile.stderr
    run = runs[0]
    assert not _problems(run), _problems(run)
    verdicts = _verdicts(run)
    assert verdicts["client-long-text"] is Verdict.PASS
    assert verdicts["client-closes-on-malformed"] is Verdict.PASS
    assert verdicts["client-saves-files"] is Verdict.PASS
    assert verdicts["client-file"] is Verdict.PASS


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
    long_text: str = "split",
    hostile: str = "close",
) -> None:
    """A client doing the kit's script, with one defect when asked: ``long_text`` is "split"
    (as spec 3.1.6 says), "whole" (one over-long frame), "at-limit" (cut at 9999 bytes, not
    after a space) or "skip"; ``hostile`` is "close" (on the malformed frame of the last step),
    "ignore" (stays connected) or "none" (no third connection)."""
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
        data = LONG_TEXT.encode()
        if long_text == "split":
            for piece in cw.split_text(LONG_TEXT):
                peer.send(cw.Message(text=piece))
        elif long_text == "whole":
            peer.send_raw(f"msg {len(data)}".encode().ljust(10) + data)
        elif long_text == "at-limit":
            cut = 9999
            while data[cut] & 0xC0 == 0x80:
                cut -= 1
            peer.send(cw.Message(text=data[:cut].decode()))
            peer.send(cw.Message(text=data[cut:].decode()))
        else:
            peer.send(cw.Message(text="skip"))
        peer.send(cw.Message(text="skip"))  # the file step
        peer.send(cw.Quit())
        if after_quit:
            peer.send_raw(cw.encode(cw.Message(text="too late")))
        while not isinstance(peer.next(), cw.ConnectionClosed):
            pass  # relays the kit sent before it read quit, then its close
    if hostile == "none":
        return
    try:
        third = Peer(url, timeout=5)
    except OSError:
        return  # the kit ended the session already (a defect above)
    with third:
        third.send(cw.Login(nick="me"))
        if hostile == "close":
            with pytest.raises(cw.RemoteProtocolError):  # ACC, then the malformed frame
                while True:
                    third.next()
            return  # ...and we close, as spec 6.2 says
        with contextlib.suppress(cw.ProtocolError, AssertionError):
            while True:
                third.next()
        # A client that ignores the malformed frame and stays, until the kit gives up.
        third.sock.settimeout(15)
        with contextlib.suppress(OSError):
            while third.sock.recv(4096):
                pass


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
        (
            "an over-long msg frame",
            lambda url: scripted_client(url, long_text="whole"),
            "client-long-text",
        ),
        (
            "stays after a malformed frame",
            lambda url: scripted_client(url, hostile="ignore"),
            "client-closes-on-malformed",
        ),
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


def test_bytes_sent_before_ne_are_not_counted_as_sent_after_it() -> None:
    # The early list request is one defect (client-waits-for-acc), reported once: after NE
    # this client sends nothing, and client-silent-after-ne must say so.
    options = ClientOptions(wait=3.0, hold=0.2, prompts=False)
    with client_kit(options) as (url, runs):
        scripted_client(url, early=True)
    verdicts = _verdicts(runs[0])
    assert verdicts["client-waits-for-acc"] is Verdict.FAIL
    assert verdicts["client-silent-after-ne"] is Verdict.PASS, _failures(runs[0])


def test_a_client_flooding_before_acc_fails_its_case_not_the_kit() -> None:
    # More than a paused decoder holds (MAX_BUFFERED) before the answer to the login: the kit
    # stops reading and ends the session with a verdict, instead of crashing in receive_data.
    flood = cw.encode(cw.Message(text="x" * cw.TEXT_MAX))
    options = ClientOptions(wait=3.0, hold=1.0, prompts=False)
    with client_kit(options) as (url, runs):
        peer = Peer(url, timeout=5)
        peer.send(cw.Login(nick="me"))
        with contextlib.suppress(OSError):  # the kit closes while we still write
            for _ in range(2 * cw.MAX_BUFFERED // len(flood)):
                peer.send_raw(flood)
        peer.close()
    run = runs[0]
    assert not [r.case.id for r in run.results if r.verdict is Verdict.ERROR]
    result = next(r for r in run.results if r.case.id == "client-waits-for-acc")
    assert result.verdict is Verdict.FAIL
    assert re.fullmatch(
        r"\d+ bytes sent before the answer on connection 1; the kit stopped reading and ended "
        r"the session",
        result.actual,
    ), result.actual
    well_formed = next(r for r in run.results if r.case.id == "client-well-formed")
    assert well_formed.verdict is Verdict.FAIL
    assert well_formed.requirement.section == "3.1.1"


def test_an_over_long_frame_is_reported_against_the_long_text_step() -> None:
    options = ClientOptions(wait=3.0, hold=0.2, prompts=False)
    with client_kit(options) as (url, runs):
        scripted_client(url, long_text="whole", hostile="none")
    result = next(r for r in runs[0].results if r.case.id == "client-long-text")
    assert "text_size 15001 is out of range" in result.actual
    assert result.requirement.section == "2.7"  # a sender MUST NOT send a size out of range


def test_a_cut_at_the_limit_is_non_strict() -> None:
    with client_kit() as (url, runs):
        scripted_client(url, long_text="at-limit")
    verdicts = _verdicts(runs[0])
    assert verdicts["client-long-text"] is Verdict.PASS  # every MUST holds
    assert verdicts["client-long-text-cut"] is Verdict.NON_STRICT  # the SHOULD does not


def test_optional_steps_are_skipped_not_failed() -> None:
    options = ClientOptions(wait=3.0, hold=0.2, prompts=False)
    with client_kit(options) as (url, runs):
        scripted_client(url, long_text="skip", hostile="none")
    run = runs[0]
    assert not _failures(run), _failures(run)
    verdicts = _verdicts(run)
    for case_id in ("client-long-text", "client-file", "client-closes-on-malformed"):
        assert verdicts[case_id] is Verdict.SKIP, case_id
    assert verdicts["client-saves-files"] is Verdict.SKIP  # no --downloads given


def test_a_well_behaved_scripted_client_passes() -> None:
    with client_kit() as (url, runs):
        scripted_client(url)
    run = runs[0]
    assert not _problems(run), _problems(run)
    verdicts = _verdicts(run)
    assert verdicts["client-file"] is Verdict.SKIP  # it skipped the optional step
    assert verdicts["client-long-text"] is Verdict.PASS
    assert verdicts["client-closes-on-malformed"] is Verdict.PASS
    assert MALFORMED.startswith(b"msg 3 5\x00")


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
        "--long-text",
        str(tmp_path / "long.txt"),
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
    assert str(tmp_path / "long.txt") in out  # where the operator finds the long text
    assert (tmp_path / "long.txt").read_text(encoding="utf-8") == LONG_TEXT + "\n"
    # skipped: client-file (the step), client-saves-files (no --downloads), client-tls-alpn
    assert out.strip().splitlines()[-1].startswith("15 passed, 0 failed, 3 skipped")
    assert (tmp_path / "c.json").is_file()
