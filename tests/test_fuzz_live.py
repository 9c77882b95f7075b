"""Live-server fuzz campaign (issue 6): hypothesis byte streams over real sockets.

Each example opens one to four hostile connections at once and sends each a generated stream:
arbitrary bytes, a valid client conversation, or a valid one mutated (bytes flipped, inserted,
deleted), cut into arbitrary chunks and interleaved between the connections. Then it closes
them and checks that the server is up, that two sentinel clients logged in all along still
talk to each other, that every hostile connection (and nothing else) is gone, that no spool is
left open, and that the server caught no internal error.

CI runs a bounded number of examples. The long campaign is the same test with more:

    CHATWIRE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_live.py -q

(figures in docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatwire as cw
from chatserver import Server
from tests.strategies import chunked, client_streams
from tests.support import Peer, running_server, wait_until
from tests.test_attacks import skip_to
from tests.test_connection import mutated

EXAMPLES = int(os.environ.get("CHATWIRE_FUZZ_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Server, Peer, Peer]]:
    with running_server(login_timeout=5, stall_timeout=5) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "sentana"), Peer.login(url, "sentbob")
        yield server, ana, bob


@st.composite
def hostile_stream(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "valid", "mutated", "valid-then-junk"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2000))
    stream = bytes(draw(client_streams()).data[:20_000])
    if kind == "mutated":
        return draw(mutated(stream))
    if kind == "valid-then-junk":
        return stream + draw(st.binary(min_size=1, max_size=50))
    return stream


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    streams=st.lists(hostile_stream(), min_size=1, max_size=4),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
)
def test_hostile_streams_affect_only_their_own_connections(
    live: tuple[Server, Peer, Peer], streams: list[bytes], sizes: list[int]
) -> None:
    server, ana, bob = live
    port = int(server.urls[0].rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in streams]
    pieces = [chunked(stream, sizes) for stream in streams]
    # Interleave the connections' chunks, as a busy network would.
    for step in range(max(len(p) for p in pieces)):
        for sock, chunks in zip(socks, pieces, strict=True):
            if step < len(chunks):
                with contextlib.suppress(OSError):  # the server may already have closed it
                    sock.sendall(chunks[step])
    for sock in socks:
        sock.close()
    assert server.stats()["internal_errors"] == 0
    # The sentinels still talk (skipping whatever the valid parts legitimately relayed).
    live_check.count += 1
    text = f"check {live_check.count}"
    ana.send(cw.Message(text=text))
    skip_to(bob, "sentana", text)
    bob.send(cw.Message(text=text))
    skip_to(ana, "sentbob", text)
    wait_until(
        lambda: server.stats()["connections"] == 2, timeout=10, what="hostile connections gone"
    )
    stats = server.stats()
    assert stats["members"] == 2 and stats["open_spools"] == 0 and stats["spool_used"] == 0
    assert stats["internal_errors"] == 0


class live_check:  # noqa: N801 - a counter shared by the examples
    count = 0
