"""Tests of chatwire.conformance.probe: what a probe reports, whatever segments the server's
bytes arrive in."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import chatwire as cw
from chatwire.conformance import KitOptions
from chatwire.conformance.probe import CaseContext
from chatwire.conformance.registry import Failed
from chatwire.transport import parse_endpoint


@contextmanager
def one_connection_server(script: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server that accepts one connection, answers its login with ACC, then runs ``script``."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            server = cw.Connection(cw.Role.SERVER)
            while True:
                server.receive_data(conn.recv(4096))
                if isinstance(server.next_event(), cw.Login):
                    break
            conn.sendall(server.send(cw.Accepted()))
            script(conn)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(10)
        listener.close()


RELAY = cw.encode(cw.FileRelay(sender="ana", name="a.bin", size=100_000)) + bytes(100_000)


def quiet_failure(script: Callable[[socket.socket], None], seconds: float) -> str:
    with one_connection_server(script) as url:
        context = CaseContext(parse_endpoint(url), KitOptions(), timeout=10)
        probe = context.connect("bob")
        assert isinstance(probe.login("bob").event, cw.Accepted)
        with pytest.raises(Failed) as failed:
            probe.quiet(seconds)
        probe.close()
    return failed.value.actual


def test_a_file_that_arrives_in_pieces_within_the_wait_is_reported_whole() -> None:
    # Seen in CI: a server that corks its file frames sends a full segment, then the rest a
    # moment later; the report must name the frame, not depend on where the segments fell.
    def script(conn: socket.socket) -> None:
        conn.sendall(RELAY[:65_483])
        time.sleep(0.1)
        conn.sendall(RELAY[65_483:])

    actual = quiet_failure(script, 1.0)
    assert actual.startswith("bob received file-relay from 'ana': 'a.bin' (100000 bytes)"), actual


def test_a_file_still_arriving_when_the_wait_ends_is_reported_as_arriving() -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(RELAY[:50_000])  # and the rest never

    actual = quiet_failure(script, 0.3)
    assert actual == "bob is receiving file-relay from 'ana': 'a.bin' (100000 bytes)", actual


def test_a_file_cut_by_the_end_of_the_stream_is_reported_by_the_decoder() -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(RELAY[:50_000])
        conn.shutdown(socket.SHUT_WR)

    actual = quiet_failure(script, 30.0)  # the end of the stream ends the wait
    assert actual.startswith("the stream ended inside a frame"), actual
