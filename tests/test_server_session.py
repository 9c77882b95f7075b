"""Tests of chatserver.session: what each event means on the server, through a real server.

(The exchanges themselves are in test_server.py; here: notices, the welcome, error notices,
pipelined requests, and the one log line of every departure.)"""

from __future__ import annotations

import logging
import re
import socket
import struct

import pytest

import chatwire as cw
from tests.support import Peer, log_port, running_server, wait_until


def test_join_leave_and_rename_notices_are_opt_in() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana = Peer.login(url, "ana")
        Peer.login(url, "bob").close()
        ana.send(cw.ListRequest())
        assert ana.expect(cw.ListReply, skip_notices=False)  # no notice came before the reply
    with running_server(notices=True) as server:
        url = server.urls[0]
        ana = Peer.login(url, "ana")
        bob = Peer.login(url, "bob")
        assert ana.expect(cw.Notice, skip_notices=False).text == "bob joined"
        bob.send(cw.NickRequest(nick="rob"))
        bob.expect(cw.NickChanged)
        assert ana.expect(cw.Notice, skip_notices=False).text == "bob is now rob"
        bob.send(cw.Quit())
        assert ana.expect(cw.Notice, skip_notices=False).text == "rob left (quit)"
        bob.expect_closed()  # and no notice of its own leaving


def test_the_welcome_notice_follows_acc() -> None:
    with running_server(welcome="files up to 4 GiB; be nice") as server:
        peer = Peer(server.urls[0])
        peer.send(cw.Login(nick="ana"))
        assert peer.next() == cw.Accepted()
        assert peer.next() == cw.Notice(text="files up to 4 GiB; be nice")


def test_a_protocol_error_after_login_is_explained_in_one_notice() -> None:
    with running_server() as server:
        peer = Peer.login(server.urls[0], "ana")
        peer.send_raw(b"list 5    ")  # list with a size: wrong number of fields
        notice = peer.expect(cw.Notice, skip_notices=False)
        assert notice.text.startswith("closing: protocol error") and "(spec 2.6)" in notice.text
        peer.expect_closed()


def test_the_server_answers_pipelined_requests_from_one_read() -> None:
    with running_server() as server:
        peer = Peer(server.urls[0])
        frames = [peer.conn.send(cw.Login(nick="ana"))]
        peer.send_raw(frames[0])
        peer.expect(cw.Accepted)
        peer.send_raw(b"".join(peer.conn.send(cw.ListRequest()) for _ in range(50)))
        for _ in range(50):
            assert peer.expect(cw.ListReply).nicks == ("ana",)


def _reset(peer: Peer) -> None:
    # SO_LINGER with a zero timeout: close() sends a TCP reset instead of a FIN.
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("quit", r"quit"),
        ("close", r"connection closed by the client"),
        ("reset", r"connection reset by the peer"),
        ("reset mid-file", r"connection reset by the peer; file 'f\.bin' discarded \(3 of 10 "),
        (
            "close mid-file",
            r"connection closed by the client inside a frame: protocol error: the stream ended "
            r"inside a frame .*\(spec 6\.5\) at byte \d+; file 'f\.bin' discarded \(3 of 10 ",
        ),
        ("malformed", r"protocol error: header .* does not match the grammar \(spec 2\.3\) at "),
    ],
)
def test_every_departure_is_logged_once_with_its_reason(
    how: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatserver")
    with running_server() as server:
        peer = Peer.login(server.urls[0], "ana")
        who = log_port(peer.sock)
        if "mid-file" in how:
            peer.send(cw.File(name="f.bin", size=10))
            peer.send_raw(b"abc")
            (session,) = server.sessions
            wait_until(
                lambda: session._upload is not None and session._upload.written == 3,
                what="3 bytes of the upload spooled",
            )
        if how == "quit":
            peer.send(cw.Quit())
        elif how.startswith("reset"):
            _reset(peer)
        elif how == "malformed":
            peer.send_raw(b"msg\x005    hello")
        else:
            peer.close()
        wait_until(lambda: server.stats()["connections"] == 0, what="the departure")
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(who)]
        departures = [line for line in lines if ": disconnected: " in line]
        assert len(departures) == 1, lines
        assert re.fullmatch(rf"{re.escape(who)} \(ana\): disconnected: {reason}.*", departures[0])
        assert departures[0].count("spec") <= 1, departures[0]
        assert server.stats()["open_spools"] == 0
