"""Ordering and completeness under load (issue 6, spec 5.3).

Many senders and receivers share one server process; every message carries its sender's
sequence number. Every receiver that stays connected must get every message of every other
sender exactly once, in that sender's order, and all receivers must see the same interleaving
(one acceptance order). Bounded for CI; the long soak is the same test with more:

    CHATWIRE_SOAK_CLIENTS=200 CHATWIRE_SOAK_SENDERS=20 CHATWIRE_SOAK_MESSAGES=5000 \\
        .venv/bin/python -m pytest tests/test_soak.py -q -p no:timeout

(figures in docs/reliability.md).
"""

from __future__ import annotations

import os
import resource
import selectors
import threading
import time

import chatwire as cw
from tests.support import Peer, server_process

CLIENTS = int(os.environ.get("CHATWIRE_SOAK_CLIENTS", "100"))
SENDERS = int(os.environ.get("CHATWIRE_SOAK_SENDERS", "10"))
MESSAGES = int(os.environ.get("CHATWIRE_SOAK_MESSAGES", "1000"))  # per sender


def test_every_message_exactly_once_in_order_to_everyone() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with server_process("--flood-rate", "0", "--log-level", "warning") as proc:
        url = proc.urls[0]
        peers = [Peer.login(url, f"s{i}", timeout=30) for i in range(CLIENTS)]
        senders = peers[:SENDERS]
        # Receivers are read by one selectors loop, so no one falls behind.
        got: dict[int, list[tuple[int, int]]] = {i: [] for i in range(CLIENTS)}
        expected_each = {
            i: MESSAGES * (SENDERS - (1 if i < SENDERS else 0)) for i in range(CLIENTS)
        }
        closed: set[int] = set()
        selector = selectors.DefaultSelector()
        for i, peer in enumerate(peers):
            peer.sock.setblocking(False)
            selector.register(peer.sock, selectors.EVENT_READ, i)
        done = threading.Event()

        def read() -> None:
            remaining = sum(expected_each.values())
            deadline = time.monotonic() + 60 + MESSAGES * SENDERS * CLIENTS / 200_000
            while remaining and time.monotonic() < deadline:
                for key, _ in selector.select(1.0):
                    i = key.data
                    peer = peers[i]
                    try:
                        data = peer.sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    peer.conn.receive_data(data)
                    for event in peer.conn.events():
                        if isinstance(event, cw.MessageRelay):
                            sender, seq = event.text.split(":")
                            got[i].append((int(sender[1:]), int(seq)))
                            remaining -= 1
                        elif isinstance(event, cw.ConnectionClosed):
                            closed.add(i)
                            selector.unregister(peer.sock)
                            remaining -= expected_each[i] - len(got[i])
            done.set()

        reader = threading.Thread(target=read)
        reader.start()
        # Senders take turns in bursts, so their messages interleave at the server.
        for start in range(0, MESSAGES, 50):
            for s, peer in enumerate(senders):
                frames = b"".join(
                    cw.encode(cw.Message(text=f"s{s}:{n}"))
                    for n in range(start, min(start + 50, MESSAGES))
                )
                peer.sock.setblocking(True)
                peer.sock.sendall(frames)
                peer.sock.setblocking(False)
        reader.join(600)
        assert done.is_set()
        assert not closed, f"receivers dropped: {sorted(closed)}"
        for i in range(CLIENTS):
            assert len(got[i]) == expected_each[i], (
                f"receiver s{i}: {len(got[i])} of {expected_each[i]}"
            )
            for s in range(SENDERS):
                if s != i:
                    assert [n for sender, n in got[i] if sender == s] == list(range(MESSAGES))
        # Everyone saw one acceptance order (receivers that are not senders saw everything).
        listeners = [got[i] for i in range(SENDERS, CLIENTS)]
        assert all(order == listeners[0] for order in listeners)
        for peer in peers:
            peer.close()
