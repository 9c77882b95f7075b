"""The trace proxy (chatwire/proxy.py): bytes forwarded unchanged both ways, every frame printed
with time and direction, file data summarised, violations flagged while forwarding goes on,
only the side that broke the protocol blamed, several connections at once, and the whole
conformance kit run through it against the reference server without one server violation."""

from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import cast

import chatwire as cw
from chatwire.conformance import SERVER, KitOptions, Level, Verdict, run_cases
from chatwire.proxy import C2S, S2C, Proxy, Tracer
from chatwire.transport import parse_endpoint
from tests.support import ROOT, Peer, running_server, wait_until


class _Output(io.StringIO):
    """A trace output that tests can read while the proxy writes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


@contextlib.contextmanager
def proxy_to(upstream: str) -> Iterator[tuple[Proxy, _Output]]:
    out = _Output()
    proxy = Proxy("tcp://127.0.0.1:0", upstream, out)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy, out
    finally:
        proxy.stop()
        thread.join(timeout=5)


def test_bytes_are_forwarded_unchanged_both_ways_even_garbage() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    received = bytearray()
    reply = random.Random(1).randbytes(200_000) + b"ACC\x00\x00\x00\x00\x00\x00\x00"

    def serve() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.sendall(reply)
            while data := conn.recv(65536):
                received.extend(data)

    threading.Thread(target=serve, daemon=True).start()
    sent = cw.encode(cw.Login(nick="ana")) + random.Random(2).randbytes(300_000)
    with proxy_to(f"tcp://127.0.0.1:{upstream.getsockname()[1]}") as (proxy, out):
        client = socket.create_connection(("127.0.0.1", proxy.endpoint.port), timeout=10)
        client.sendall(sent)
        client.shutdown(socket.SHUT_WR)  # passed on as a half-close
        got = bytearray()
        while data := client.recv(65536):
            got.extend(data)
        client.close()
        wait_until(lambda: len(received) == len(sent), 10, "the upstream to get every byte")
    upstream.close()
    assert bytes(got) == reply
    assert bytes(received) == sent
    text = out.text()
    assert "C->S  login 'ana'" in text
    assert text.count("!! VIOLATION") == 2  # one per direction; forwarding went on regardless


def test_frames_are_printed_with_time_and_direction_file_data_summarised() -> None:
    secret = b"SECRET-FILE-CONTENT-" * 1000
    with running_server() as server, proxy_to(server.urls[0]) as (proxy, out):
        with Peer.login(proxy.url, "ana") as ana, Peer.login(proxy.url, "bob") as bob:
            ana.send(cw.Message(text="hello"))
            assert bob.expect(cw.MessageRelay).text == "hello"
            ana.send_file("a.bin", secret)
            assert bob.expect_file()[1] == secret
            ana.send(cw.ListRequest())
            ana.expect(cw.ListReply)
            ana.send(cw.Quit())
            ana.expect_closed()
        wait_until(lambda: "(end of stream)" in out.text(), 5, "the end of the stream traced")
    text = out.text()
    stamp = r"\d\d:\d\d:\d\d\.\d{6}"
    assert re.search(rf"^{stamp} \[1\] C->S  login 'ana'  \[3         ana\]$", text, re.M)
    assert re.search(rf"^{stamp} \[1\] S->C  ACC  \[ACC       \]$", text, re.M)
    assert re.search(rf"^{stamp} \[2\] S->C  msg-relay from 'ana': 'hello'", text, re.M)
    assert "C->S  file 'a.bin' (20000 bytes)" in text
    assert "S->C  file-relay from 'ana': 'a.bin' (20000 bytes)" in text
    assert text.count("... 20000 bytes of file data (sha256 ") == 2
    assert "SECRET-FILE-CONTENT" not in text  # data is summarised, never dumped
    assert "C->S  quit  [quit      ]" in text
    assert "VIOLATION" not in text


def test_violations_are_flagged_and_forwarding_goes_on() -> None:
    with running_server() as server, proxy_to(server.urls[0]) as (proxy, out):
        with Peer.login(proxy.url, "ana") as ana:
            ana.send_raw(b"msg 05    hello")
            # chatserver got the bytes (forwarded unchanged) and closes with a notice
            notice = ana.expect(cw.Notice, skip_notices=False)
            assert "protocol error" in notice.text
            ana.expect_closed()
        with Peer(proxy.url) as early:
            # list in the same write as login, before ACC: forbidden (spec 3.1.1)
            early.send_raw(cw.encode(cw.Login(nick="bob")) + cw.encode(cw.ListRequest()))
            wait_until(lambda: out.text().count("VIOLATION") >= 2, 5, "two violations flagged")
    text = out.text()
    line = next(x for x in text.splitlines() if "VIOLATION" in x and "[1]" in x)
    assert "C->S  !! VIOLATION" in line and "spec 2.3" in line and "leading zero" in line
    assert "still forwarded" in line
    assert "before ACC or NE" in text


def _violations(text: str, direction: str) -> list[str]:
    return [line for line in text.splitlines() if f"{direction}  !! VIOLATION" in line]


def _fake_upstream(answer: bytes) -> tuple[str, socket.socket]:
    """A server that reads 10 bytes, writes ``answer`` and closes (to make the proxy watch a
    server that breaks the protocol)."""
    upstream = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.recv(10)
            conn.sendall(answer)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{upstream.getsockname()[1]}", upstream


def test_a_malformed_first_frame_makes_the_proxy_expect_ne() -> None:
    # spec 3.1.1, 6.3: the server answers a malformed first frame NE; that is not a violation
    with running_server() as server, proxy_to(server.urls[0]) as (proxy, out):
        with Peer(proxy.url) as peer:
            peer.send_raw(b"3\x00\x00\x00\x00\x00\x00\x00\x00\x00ana")
            peer.conn.send(cw.Login(nick=""))  # so that our decoder expects the answer too
            peer.expect(cw.Refused)
            peer.expect_closed()
        wait_until(lambda: "connection closed" in out.text(), 5, "the close traced")
    text = out.text()
    assert len(_violations(text, "C->S")) == 1
    assert not _violations(text, "S->C"), _violations(text, "S->C")
    assert "S->C  -- expecting NE and the close (spec 3.1.1, 6.3)" in text
    assert "S->C  NE  [NE        ]" in text


def test_acc_to_a_malformed_first_frame_is_flagged() -> None:
    url, upstream = _fake_upstream(b"ACC       ")
    with proxy_to(url) as (proxy, out), Peer(proxy.url) as peer:
        peer.send_raw(b"+3        ana")
        wait_until(lambda: len(_violations(out.text(), "S->C")) == 1, 5, "the ACC flagged")
    upstream.close()
    assert "ACC answers a malformed first frame" in _violations(out.text(), "S->C")[0]


def test_a_server_cutting_a_frame_short_is_noted_not_flagged() -> None:
    # What a server does to a client whose SendQ is exceeded (spec 7.3): close mid-frame.
    url, upstream = _fake_upstream(b"ACC       " + b"msg 3 9999anaonly the beginning")
    with proxy_to(url) as (proxy, out), Peer(proxy.url) as peer:
        peer.send(cw.Login(nick="ana"))
        wait_until(lambda: "inside a frame" in out.text(), 5, "the cut traced")
    upstream.close()
    text = out.text()
    assert not _violations(text, "S->C"), _violations(text, "S->C")
    assert "S->C  -- the server ended the stream inside a frame (byte " in text


def test_after_a_client_violation_the_server_is_checked_for_form_only() -> None:
    # login and list in one write (spec 3.1.1: nothing before ACC); chatserver answers both
    with (
        running_server() as server,
        proxy_to(server.urls[0]) as (proxy, out),
        Peer(proxy.url) as early,
    ):
        early.send_raw(cw.encode(cw.Login(nick="bob")) + cw.encode(cw.ListRequest()))
        wait_until(lambda: "S->C  list-reply ['bob']" in out.text(), 5, "the list reply")
    text = out.text()
    assert len(_violations(text, "C->S")) == 1 and "before ACC or NE" in text
    assert not _violations(text, "S->C"), _violations(text, "S->C")  # the reply is not blamed
    assert "S->C  -- C->S broke the protocol: S->C frames are still checked for their form" in text


def test_after_a_client_violation_server_frames_are_still_checked_for_their_form() -> None:
    url, upstream = _fake_upstream(b"ACC       " + b"NC        " + b"msg 3 2\x00\x00\x00anahi")
    with proxy_to(url) as (proxy, out), Peer(proxy.url) as peer:
        peer.send_raw(cw.encode(cw.Login(nick="ana")) + cw.encode(cw.ListRequest()))
        wait_until(lambda: _violations(out.text(), "S->C"), 5, "the NUL-padded relay flagged")
    upstream.close()
    text = out.text()
    assert "S->C  NC  [NC        ]" in text  # unasked, but the state is not checked any more
    (flagged,) = _violations(text, "S->C")
    assert "spec 2.3, byte 20" in flagged and "NUL" in flagged


def _traced(*frames: tuple[str, bytes]) -> Tracer:
    tracer = Tracer(1, io.StringIO(), threading.Lock())
    for direction, data in frames:
        tracer.feed(direction, data)
    return tracer


def test_server_frames_in_flight_after_quit_are_not_flagged() -> None:
    # spec 3.1.5, 4.3: the server sent these before it read quit; the client receives them in
    # state QUIT. The server-role decoder, which starts no frame after quit, must not judge them.
    login, acc, quit = (cw.encode(e) for e in (cw.Login(nick="ana"), cw.Accepted(), cw.Quit()))
    relay = _traced((C2S, login), (S2C, acc), (C2S, quit), (S2C, b"msg 1 2   bhi"))
    assert not relay.violations, relay.violations
    reply = _traced(
        (C2S, login), (S2C, acc), (C2S, cw.encode(cw.ListRequest()) + quit), (S2C, b"3         ana")
    )
    assert not reply.violations, reply.violations
    head = cw.encode(cw.FileRelay(sender="b", name="a.txt", size=4))
    file = _traced((C2S, login), (S2C, acc), (C2S, quit), (S2C, head + b"da"), (S2C, b"ta"))
    assert not file.violations, file.violations
    assert "... 4 bytes of file data" in cast(io.StringIO, file.out).getvalue()


def test_an_unasked_reply_after_quit_is_still_flagged() -> None:
    # The client-role side still follows the state: NC with no nick pending is malformed (4.3).
    tracer = _traced(
        (C2S, cw.encode(cw.Login(nick="ana"))),
        (S2C, cw.encode(cw.Accepted())),
        (C2S, cw.encode(cw.Quit())),
        (S2C, cw.encode(cw.NickChanged())),
    )
    (flagged,) = tracer.violations
    assert flagged.startswith("S->C ") and "spec 4.3" in flagged


def _open_connections(text: str) -> set[str]:
    opened = re.findall(r"^\S+ \[(\d+)\] --  client .* connected;", text, re.MULTILINE)
    closed = re.findall(r"^\S+ \[(\d+)\] --  connection closed$", text, re.MULTILINE)
    return set(opened) - set(closed)


def test_the_kit_through_the_proxy_flags_no_server_violation() -> None:
    options = KitOptions(clients=20, large_file=4 << 20, flood=8 << 20)
    with running_server() as server, proxy_to(server.urls[0]) as (proxy, out):
        results = run_cases(SERVER.cases(), parse_endpoint(proxy.url), options)
        # Let the last connections end (a server may take seconds to close a slow reader),
        # so that everything the server sent has been traced; then look, ended or not.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _open_connections(out.text()):
            time.sleep(0.1)
    text = out.text()
    assert not _violations(text, "S->C"), _violations(text, "S->C")[:5]
    assert _violations(text, "C->S")  # the kit's deliberately malformed frames
    failed = [
        r.case.id for r in results if r.case.level is Level.MUST and r.verdict is not Verdict.PASS
    ]
    assert not failed, failed


def test_several_connections_at_once() -> None:
    with running_server() as server, proxy_to(server.urls[0]) as (proxy, out):
        peers = [Peer.login(proxy.url, f"user{i}") for i in range(5)]
        for peer in peers:
            peer.send(cw.Message(text="hi"))
        for peer in peers:
            senders = {peer.expect(cw.MessageRelay).sender for _ in range(4)}
            assert len(senders) == 4
        for peer in peers:
            peer.close()
    text = out.text()
    for number in range(1, 6):
        assert f"[{number}] C->S  login" in text


def test_command_line() -> None:
    with running_server() as server:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatwire.proxy",
                "--listen",
                "tcp://127.0.0.1:0",
                "--upstream",
                server.urls[0],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"listening on (\S+), forwarding to", line)
            assert match, line
            with Peer.login(match.group(1), "ana"):
                pass
            time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "C->S  login 'ana'" in out and "S->C  ACC" in out
