"""Tests of chatserver.server: the reference server over real sockets on 127.0.0.1.

Every exchange of spec 3.1 with several clients, relays to all others and never the sender,
files byte-identical, store-and-forward when a sender drops, slow readers, timeouts, TLS with
and without client certificates, Unix sockets, graceful shutdown, and 1,000 clients. The server
runs in this process (on a thread) where the test looks inside it, and as a subprocess where
behaviour crosses a process boundary (signals, many sockets, big files).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trustme

import chatwire as cw
from chatwire.transport import connect, parse_endpoint
from tests.support import (
    ROOT,
    Peer,
    decode_relays,
    memory_kib,
    pattern_block,
    process_stats,
    read_to_end,
    running_server,
    server_process,
    small_window_socket,
    wait_until,
)


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> None:
    # 1,000 clients need 1,000 descriptors in this process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- The exchanges of spec 3.1 ------------------------------------------------------------------


def test_login_list_nick_and_relays_between_three_clients() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana, bob, cid = (Peer.login(url, nick) for nick in ("ana", "bob", "Cid"))
        ana.send(cw.ListRequest())
        assert sorted(ana.expect(cw.ListReply).nicks) == ["Cid", "ana", "bob"]
        ana.send(cw.Message(text="olá a todos"))
        for peer in (bob, cid):
            assert peer.expect(cw.MessageRelay) == cw.MessageRelay(sender="ana", text="olá a todos")
        bob.send(cw.NickRequest(nick="Bobby"))
        assert bob.expect(cw.NickChanged) == cw.NickChanged()
        bob.send(cw.Message(text="renamed"))
        assert ana.expect(cw.MessageRelay).sender == "Bobby"  # spec 3.1.3: the new nick from now on
        assert cid.expect(cw.MessageRelay).sender == "Bobby"
        cid.send(cw.ListRequest())
        assert sorted(cid.expect(cw.ListReply).nicks) == ["Bobby", "Cid", "ana"]
        for peer in (ana, bob, cid):
            peer.nothing_for(0.2)  # no echo, nothing else
        ana.send(cw.Quit())
        ana.expect_closed()
        bob.send(cw.ListRequest())
        assert sorted(bob.expect(cw.ListReply).nicks) == ["Bobby", "Cid"]


def test_duplicate_nick_is_refused_caselessly_and_the_connection_closed() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana = Peer.login(url, "Ana")
        dup = Peer(url)
        dup.send(cw.Login(nick="ANA"))  # spec 2.8.4: equal nicks
        assert dup.expect(cw.Refused) == cw.Refused()
        dup.expect_closed()
        retry = Peer.login(url, "Ana2")  # spec 3.1.1: a new connection may try again
        ana.send(cw.Message(text="hi"))
        assert retry.expect(cw.MessageRelay).text == "hi"


@pytest.mark.parametrize("nick", ["", "a b", "abcdefghij", "ana!", "\u202eana"])
def test_invalid_nicks_are_refused(nick: str) -> None:
    with running_server() as server:
        peer = Peer(server.urls[0])
        if len(nick.encode()) <= cw.NICK_MAX:
            peer.send(cw.Login(nick=nick))
        else:  # not even framable: a 10-byte nick breaks spec 2.7, and is refused the same way
            peer.conn.send(cw.Login(nick=""))  # our side now awaits ACC/NE
            peer.send_raw(b"10        " + nick.encode())
        assert peer.expect(cw.Refused) == cw.Refused()
        peer.expect_closed()


def test_nick_change_to_a_taken_or_invalid_nick_is_refused_and_the_old_nick_stays() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        for nick in ("ANA", "b o b", ""):
            bob.send(cw.NickRequest(nick=nick))
            assert bob.expect(cw.Refused) == cw.Refused()
        bob.send(cw.NickRequest(nick="BOB"))  # its own nick in another case: accepted
        bob.expect(cw.NickChanged)
        bob.send(cw.Message(text="x"))
        assert ana.expect(cw.MessageRelay).sender == "BOB"


def test_replies_come_in_request_order_while_relays_interleave() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        bob.send(cw.Message(text="1"))
        requests = [
            cw.ListRequest(),
            cw.NickRequest(nick="bob"),
            cw.NickRequest(nick="anna"),
            cw.ListRequest(),
        ]
        ana.send_raw(b"".join(ana.conn.send(r) for r in requests))  # pipelined, one write
        replies = [ana.next() for _ in range(5)]
        relays = [e for e in replies if isinstance(e, cw.MessageRelay)]
        others = [e for e in replies if not isinstance(e, cw.MessageRelay)]
        assert relays == [cw.MessageRelay(sender="bob", text="1")]
        assert isinstance(others[0], cw.ListReply) and others[1:3] == [
            cw.Refused(),
            cw.NickChanged(),
        ]
        assert sorted(others[3].nicks) == ["anna", "bob"]  # type: ignore[union-attr]


def test_relays_arrive_in_one_order_for_everyone() -> None:
    # spec 5.3: all clients see the same sequence of relays, minus their own.
    with running_server() as server:
        url = server.urls[0]
        peers = [Peer.login(url, f"u{i}") for i in range(4)]
        for round_ in range(20):
            for i, peer in enumerate(peers):
                peer.send(cw.Message(text=f"{i}:{round_}"))
        seen = {}
        for i, peer in enumerate(peers):
            seen[i] = [peer.expect(cw.MessageRelay).text for _ in range(60)]
        everything = sorted({t for texts in seen.values() for t in texts})
        assert len(everything) == 80
        order = {}
        for i, texts in seen.items():
            assert all(not t.startswith(f"{i}:") for t in texts)  # never its own
            for sender in range(4):
                mine = [t for t in texts if t.startswith(f"{sender}:")]
                assert mine == sorted(mine, key=lambda t: int(t.split(":")[1]))  # sender order
            order[i] = texts
        # The relative order of any two messages is the same at every client that got both.
        position = {i: {t: n for n, t in enumerate(texts)} for i, texts in order.items()}
        for a in range(4):
            for b in range(a + 1, 4):
                common = [t for t in order[a] if t in position[b]]
                assert common == sorted(common, key=position[b].__getitem__)


# --- Files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 300_000])
def test_files_reach_all_others_byte_identical_and_never_the_sender(
    size: int, tmp_path: Path
) -> None:
    data = os.urandom(size)
    with running_server(spool_dir=str(tmp_path)) as server:
        url = server.urls[0]
        ana, bob, cid = (Peer.login(url, n) for n in ("ana", "bob", "cid"))
        ana.send_file("relatório.pdf", data)
        for peer in (bob, cid):
            start, received = peer.expect_file()
            assert start == cw.FileRelay(sender="ana", name="relatório.pdf", size=size)
            assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
        ana.nothing_for(0.2)
        wait_until(lambda: server.stats()["open_spools"] == 0, what="spool released")
        assert list(tmp_path.iterdir()) == []


def _receive_file_hashing(peer: Peer, results: dict[str, object], key: str) -> None:
    # Read a file relay straight from the socket, hashing as it comes (never all in memory).
    conn, sock = peer.conn, peer.sock
    digest = hashlib.sha256()
    size = 0
    start = None
    while True:
        event = conn.next_event()
        if event is cw.NEED_DATA:
            conn.receive_data(sock.recv(1 << 20))
            continue
        if isinstance(event, cw.FileRelay):
            start = event
        elif isinstance(event, cw.FileData):
            digest.update(event.data)
            size += len(event.data)
        elif isinstance(event, cw.FileEnd):
            break
    results[key] = (start, size, digest.hexdigest())


@pytest.mark.slow
def test_a_256_mib_file_is_relayed_byte_identical_in_bounded_server_memory(tmp_path: Path) -> None:
    # Every 1 MiB block differs (pattern_block), so a relay that sends the right amount of the
    # wrong bytes (the first MiB over and over, say) fails the sha256 check.
    blocks = 256
    size = blocks << 20
    expected = hashlib.sha256()
    with server_process("--spool-dir", str(tmp_path), "--max-file-size", "1G") as proc:
        url = proc.urls[0]
        sender = Peer.login(url, "ana", timeout=120)
        receivers = [Peer.login(url, f"r{i}", timeout=120) for i in range(2)]
        before = memory_kib(proc.process.pid, "VmHWM")  # the peak so far: start-up, logins
        results: dict[str, object] = {}
        threads = [
            threading.Thread(target=_receive_file_hashing, args=(r, results, str(i)))
            for i, r in enumerate(receivers)
        ]
        for thread in threads:
            thread.start()
        sender.send(cw.File(name="big.bin", size=size))
        for i in range(blocks):
            block = pattern_block(i)
            expected.update(block)
            sender.sock.sendall(block)
        sender.conn.account_file_data(size)
        sender.send(cw.FileEnd())
        for thread in threads:
            thread.join(120)
        for i in range(2):
            start, got, digest = results[str(i)]  # type: ignore[misc]
            assert start == cw.FileRelay(sender="ana", name="big.bin", size=size)
            assert got == size and digest == expected.hexdigest()
        growth = memory_kib(proc.process.pid, "VmHWM") - before
        assert growth < 32 * 1024, f"server peak RSS grew {growth} KiB for a 256 MiB file"
        assert list(tmp_path.iterdir()) == []


def test_a_sender_dropping_mid_file_delivers_nothing_and_leaves_no_spool(tmp_path: Path) -> None:
    with running_server(spool_dir=str(tmp_path)) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        ana.send(cw.File(name="half.bin", size=1_000_000))
        ana.send_raw(b"x" * 400_000)
        wait_until(lambda: server.stats()["open_spools"] == 1, what="the upload to start")
        ana.close()
        bob.nothing_for(0.5)  # spec 3.1.4: nothing of the file reaches anyone
        wait_until(lambda: server.stats()["open_spools"] == 0, what="the spool to be freed")
        assert server.stats()["spool_used"] == 0
        assert list(tmp_path.iterdir()) == []
        bob.send(cw.ListRequest())
        assert bob.expect(cw.ListReply).nicks == ("bob",)


def test_a_file_over_the_size_limit_closes_the_sender_when_its_size_arrives() -> None:
    with running_server(max_file_size=1000) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        ana.send_raw(cw.encode(cw.File(name="big", size=1001)))  # no data: the header decides
        ana.expect_closed()
        bob.nothing_for(0.3)


def test_a_file_that_does_not_fit_the_spool_is_refused(tmp_path: Path) -> None:
    with running_server(spool_limit=1500, spool_dir=str(tmp_path)) as server:
        url = server.urls[0]
        ana, bob, cid = (Peer.login(url, n) for n in ("ana", "bob", "cid"))
        ana.send(cw.File(name="a", size=1000))  # its 1000 bytes are reserved (spec 7.4)
        ana.send_raw(b"x" * 10)
        wait_until(lambda: server.stats()["spool_used"] == 1000, what="the reservation")
        cid.send(cw.File(name="b", size=600))  # 1600 > 1500
        assert "spool full" in cid.expect(cw.Notice).text
        cid.expect_closed()
        ana.send_raw(b"x" * 990)  # ana's file completes and is relayed
        assert bob.expect_file()[1] == b"x" * 1000


# --- Slow readers, timeouts ---------------------------------------------------------------------


def test_a_client_that_stops_reading_is_disconnected_and_the_others_keep_receiving() -> None:
    with running_server(sendq=64 * 1024, flood_rate=0) as server:
        url = server.urls[0]
        sleeper = Peer(url, sock=small_window_socket(url))
        sleeper.send(cw.Login(nick="sleeper"))
        sleeper.expect(cw.Accepted)
        talker, listener = Peer.login(url, "talker"), Peer.login(url, "listener")
        text = "x" * 9000
        got = 0
        for i in range(1500):  # about 13.5 MB: more than any socket buffer plus the SendQ
            talker.send(cw.Message(text=text))
            if i % 50 == 49:  # the listener keeps up
                while got < i + 1 - 10:
                    assert listener.expect(cw.MessageRelay).text == text
                    got += 1
        while got < 1500:
            assert listener.expect(cw.MessageRelay).text == text
            got += 1
        wait_until(lambda: server.stats()["members"] == 2, what="the sleeper to be dropped")
        talker.send(cw.ListRequest())
        assert sorted(talker.expect(cw.ListReply).nicks) == ["listener", "talker"]


def test_a_reader_that_stops_is_dropped_and_frees_the_spool_it_held(tmp_path: Path) -> None:
    # Files are queued by reference: without a write timeout, a client that never reads would
    # hold the spool (and so every later upload) hostage.
    with running_server(write_timeout=1.0, spool_dir=str(tmp_path)) as server:
        url = server.urls[0]
        sleeper = Peer(url, sock=small_window_socket(url))
        sleeper.send(cw.Login(nick="sleeper"))
        sleeper.expect(cw.Accepted)
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        ana.send_file("big.bin", b"b" * 8_000_000)
        assert bob.expect_file()[1] == b"b" * 8_000_000
        assert server.stats()["open_spools"] == 1  # still held for the sleeper
        wait_until(lambda: server.stats()["members"] == 2, timeout=10, what="the sleeper dropped")
        wait_until(lambda: server.stats()["open_spools"] == 0, what="the spool freed")


def test_a_client_with_too_many_files_queued_is_disconnected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Files are queued by reference, so their number is bounded on its own (--max-queued-files,
    # 64 by default; 3 here): over real sockets, a reader stuck behind a big file is dropped
    # when the fourth waits, and the spool it held is freed.
    caplog.set_level(logging.INFO, logger="chatserver")
    with running_server(max_queued_files=3, spool_dir=str(tmp_path), flood_rate=0) as server:
        url = server.urls[0]
        sleeper = Peer(url, sock=small_window_socket(url))
        sleeper.send(cw.Login(nick="sleeper"))
        sleeper.expect(cw.Accepted)
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        ana.send_file("big.bin", b"b" * 8_000_000)  # more than the sleeper's buffers hold
        assert bob.expect_file()[1] == b"b" * 8_000_000
        assert server.stats()["members"] == 3  # 1 file waits for the sleeper: within the bound
        for i in range(3):
            ana.send_file(f"small{i}.txt", b"s")
            assert bob.expect_file()[0].name == f"small{i}.txt"
        wait_until(lambda: server.stats()["members"] == 2, what="the sleeper dropped")
        wait_until(lambda: server.stats()["open_spools"] == 0, what="its spool freed")
        (line,) = [
            r.getMessage() for r in caplog.records if "sleeper): disconnected" in r.msg % r.args
        ]
        assert "SendQ exceeded" in line and "4 files queued" in line and "3 files)" in line


def test_a_trickled_upload_is_closed_and_frees_its_reservation(tmp_path: Path) -> None:
    # A byte now and then never trips the stall time-out, but the whole file's space was
    # reserved when its size arrived: below the minimum rate, the upload is closed.
    with running_server(
        upload_min_rate=2000, upload_rate_window=1.0, spool_dir=str(tmp_path)
    ) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        trickler = Peer.login(url, "trickler")
        trickler.send(cw.File(name="slow.bin", size=1_000_000))
        wait_until(lambda: server.stats()["spool_used"] == 1_000_000, what="the reservation")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 10 and server.stats()["members"] == 3:
                trickler.send_raw(b"t" * 100)  # 500 bytes/s: a quarter of the minimum
                time.sleep(0.2)
        assert time.monotonic() - started < 4, "the trickle was not closed"
        wait_until(lambda: server.stats()["spool_used"] == 0, what="the reservation freed")
        bob.nothing_for(0.2)
        # An upload that keeps the pace, slow as it is, gets through.
        ana.send(cw.File(name="paced.bin", size=8000))
        for _ in range(8):
            time.sleep(0.25)
            ana.send_raw(b"p" * 1000)  # 4000 bytes/s
        ana.conn.account_file_data(8000)
        ana.send(cw.FileEnd())
        assert bob.expect_file()[1] == b"p" * 8000


def test_one_address_cannot_take_the_whole_spool(tmp_path: Path) -> None:
    with running_server(spool_quota_per_ip=1500, spool_dir=str(tmp_path)) as server:
        url = server.urls[0]
        ana, bob, cid = (Peer.login(url, n) for n in ("ana", "bob", "cid"))
        ana.send(cw.File(name="a", size=1000))
        ana.send_raw(b"x" * 10)
        wait_until(lambda: server.stats()["spool_used"] == 1000, what="the reservation")
        cid.send(cw.File(name="b", size=600))  # 127.0.0.1 would hold 1600 > 1500
        assert "spool quota of 127.0.0.1 reached" in cid.expect(cw.Notice).text
        cid.expect_closed()
        ana.send_raw(b"x" * 990)
        assert bob.expect_file()[1] == b"x" * 1000
        wait_until(lambda: server.stats()["spool_used"] == 0, what="relayed: the quota is free")
        bob.send_file("c", b"y" * 1500)  # the whole quota, now that nothing else is held
        assert ana.expect_file()[1] == b"y" * 1500


def test_a_silent_connection_is_closed_by_the_login_timeout() -> None:
    with running_server(login_timeout=0.5) as server:
        silent = Peer(server.urls[0])
        started = time.monotonic()
        silent.expect_closed(timeout=5)
        assert time.monotonic() - started < 3
        partial = Peer(server.urls[0])
        partial.send_raw(b"3         a")  # half a login
        partial.expect_closed(timeout=5)


def test_a_frame_that_stalls_half_way_is_closed() -> None:
    with running_server(stall_timeout=0.5) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        ana.send_raw(b"msg 5     he")
        ana.expect_closed(timeout=5)
        bob.send(cw.Message(text="still here"))  # an idle logged-in client is not stalled
        time.sleep(1.2)
        bob.send(cw.ListRequest())
        assert bob.expect(cw.ListReply).nicks == ("bob",)


def test_a_malformed_frame_closes_only_that_connection() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        bob.send_raw(b"msg\x005    hello")
        notice = bob.expect(cw.Notice)
        assert "protocol error" in notice.text and "(spec 2.3)" in notice.text
        assert notice.text.count("2.3") == 1, notice.text  # chatwire's message names it too
        bob.expect_closed()
        ana.send(cw.ListRequest())
        assert ana.expect(cw.ListReply).nicks == ("ana",)


def test_a_malformed_first_frame_gets_ne() -> None:
    with running_server() as server:
        peer = Peer(server.urls[0])
        peer.conn.send(cw.Login(nick=""))  # our side now awaits ACC/NE
        peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert peer.expect(cw.Refused) == cw.Refused()
        peer.expect_closed()


# --- Transports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private CA, a server certificate for 127.0.0.1, and a client certificate; and the
    certificates of outsiders: a client and a server certified by another CA, and a server
    certified by ours for another name."""
    base = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("ana@example.org")
    other_ca = trustme.CA()
    stranger = other_ca.issue_cert("mallory@example.org")
    impostor = other_ca.issue_cert("127.0.0.1", "localhost")  # the right name, an unknown CA
    elsewhere = ca.issue_cert("chat.example")  # the right CA, another server's name
    paths = {}
    for name, blob in {
        "ca": ca.cert_pem,
        "server": server_cert.private_key_and_cert_chain_pem,
        "client": client_cert.private_key_and_cert_chain_pem,
        "stranger": stranger.private_key_and_cert_chain_pem,
        "impostor": impostor.private_key_and_cert_chain_pem,
        "elsewhere": elsewhere.private_key_and_cert_chain_pem,
    }.items():
        path = base / f"{name}.pem"
        blob.write_to_path(str(path))
        paths[name] = str(path)
    return paths


def test_tls_without_client_certificates(pki: dict[str, str]) -> None:
    listen = f"tls://127.0.0.1:0?cert={pki['server']}"
    with running_server(listen=[listen]) as server:
        url = f"{server.urls[0]}?ca={pki['ca']}"
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        assert (
            isinstance(ana.sock, ssl.SSLSocket)
            and ana.sock.selected_alpn_protocol() == "chatwire/1"
        )
        ana.send_file("f.bin", os.urandom(700_000))  # through the bounded TLS buffer
        start, data = bob.expect_file()
        assert start.size == 700_000 == len(data)
        ana.send(cw.Message(text="over tls"))
        assert bob.expect(cw.MessageRelay).text == "over tls"


def outsider_tries(url: str) -> tuple[float, str]:
    """A client that TLS must refuse behaves as if it had got in: it sends a login, a message
    and a file at once. Returns how long until it was refused, and what it saw."""
    started = time.monotonic()
    try:
        sock = connect(parse_endpoint(url), timeout=10)
    except (ssl.SSLError, ConnectionError) as exc:
        return time.monotonic() - started, f"handshake refused: {exc}"
    # With TLS 1.3 the client's side of the handshake completes before the server has
    # checked the client's certificate: the refusal comes with the first read.
    frames = b"7         mallory" + cw.encode(cw.Message(text="let me in"))
    frames += cw.encode(cw.File(name="x.bin", size=5)) + b"xxxxx"
    try:
        sock.sendall(frames)
        data = sock.recv(1024)
        seen = "closed" if not data else f"received {data!r}"
    except (ssl.SSLError, ConnectionError) as exc:
        seen = f"refused: {exc}"
    finally:
        sock.close()
    return time.monotonic() - started, seen


def test_tls_with_required_client_certificates(pki: dict[str, str]) -> None:
    listen = f"tls://127.0.0.1:0?cert={pki['server']}&ca={pki['ca']}"
    with running_server(listen=[listen], handshake_timeout=30) as server:
        base = server.urls[0]
        member = Peer.login(f"{base}?ca={pki['ca']}&cert={pki['client']}", "ana")
        for outsider in (f"{base}?ca={pki['ca']}", f"{base}?ca={pki['ca']}&cert={pki['stranger']}"):
            took, seen = outsider_tries(outsider)
            assert "refused" in seen or seen == "closed", seen  # never an ACC, nor anything
            assert took < 3, f"refused after {took:.1f} s: the handshake time-out, not TLS"
        member.nothing_for(0.5)  # no message, no file, no notice of theirs reached the member
        member.send(cw.ListRequest())
        assert member.expect(cw.ListReply).nicks == ("ana",)  # neither outsider got in
        stats = server.stats()
        assert stats["relayed_messages"] == stats["relayed_files"] == stats["open_spools"] == 0
        assert stats["connections"] == 1


@pytest.mark.parametrize(
    ("certificate", "why"),
    [("impostor", "certificate verify failed"), ("elsewhere", "mismatch")],
)
def test_the_client_refuses_a_server_it_cannot_verify(
    certificate: str, why: str, pki: dict[str, str], tmp_path: Path
) -> None:
    # Posing as the server: a certificate from a CA the client does not trust, or one from its
    # own CA for another name. The library and the client program both refuse before a byte
    # of the protocol is sent.
    listen = f"tls://127.0.0.1:0?cert={pki[certificate]}"
    with running_server(listen=[listen]) as server:
        url = server.urls[0]
        with pytest.raises(ssl.SSLCertVerificationError, match=why):
            connect(parse_endpoint(f"{url}?ca={pki['ca']}"), timeout=10)
        command = [sys.executable, "-m", "chatclient", url, "--ca", pki["ca"], "--nick", "ana"]
        program = subprocess.run(
            [*command, "--send", "secret", "--downloads", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            check=False,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert program.returncode == 1, program
        assert why in program.stderr, program.stderr
        assert server.stats()["members"] == 0  # it never logged in, so "secret" went nowhere


def test_unix_socket_and_tcp_listeners_share_one_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatserver")
    path = tmp_path / "chat.sock"
    with running_server(listen=["tcp://127.0.0.1:0", f"unix://{path}"], max_per_ip=1) as server:
        tcp_url, unix_url = server.urls
        assert unix_url == f"unix://{path}"
        ana, bob = Peer.login(tcp_url, "ana"), Peer.login(unix_url, "bob")
        bob.send(cw.Message(text="from unix"))
        assert ana.expect(cw.MessageRelay) == cw.MessageRelay(sender="bob", text="from unix")
        bob.send_file("u.bin", b"u" * 100_000)
        assert ana.expect_file()[1] == b"u" * 100_000
        # Unix-socket clients have no address: the log tells them apart by number, and the
        # per-address limit does not lump them together.
        cid = Peer.login(unix_url, "cid")
        cid.send(cw.Quit())
        cid.expect_closed()
        lines = [r.getMessage() for r in caplog.records]
        assert f"unix:{path}#1: logged in as 'bob'" in lines
        assert f"unix:{path}#2: logged in as 'cid'" in lines
        assert f"unix:{path}#2 (cid): disconnected: quit" in lines
    assert not path.exists()  # removed at shutdown


def test_per_address_connection_limit() -> None:
    with running_server(max_per_ip=2) as server:
        url = server.urls[0]
        first, second = Peer(url), Peer(url)
        third = Peer(url)
        third.expect_closed()
        first.send(cw.Login(nick="one"))
        first.expect(cw.Accepted)
        second.close()
        wait_until(lambda: server.stats()["connections"] == 1, what="the close to be seen")
        Peer.login(url, "two")


def test_the_total_number_of_connections_is_bounded() -> None:
    with running_server(max_clients=3) as server:
        url = server.urls[0]
        members = [Peer.login(url, f"m{i}") for i in range(3)]
        extra = Peer(url)
        extra.expect_closed()  # refused at once: the server holds no more than 3
        members[0].send(cw.Quit())
        members[0].expect_closed()
        wait_until(lambda: server.stats()["connections"] == 2, what="the quit to be seen")
        Peer.login(url, "m3")  # room again


def test_tls_handshakes_in_progress_count_against_the_connection_limit(
    pki: dict[str, str],
) -> None:
    # A handshake holds a descriptor and TLS buffers before there is any session: connections
    # that never finish one must not get round --max-clients.
    listen = f"tls://127.0.0.1:0?cert={pki['server']}"
    with running_server(listen=[listen], max_clients=3, handshake_timeout=30) as server:
        url = f"{server.urls[0]}?ca={pki['ca']}"
        host, port = server.urls[0].removeprefix("tls://").rsplit(":", 1)
        member = Peer.login(url, "ana")
        stalled = [socket.create_connection((host, int(port))) for _ in range(2)]
        wait_until(lambda: server.listeners[0].handshaking == 2, what="two handshakes pending")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            Peer.login(url, "bob", timeout=5)  # full: closed before its handshake
        for sock in stalled:
            sock.close()
        wait_until(lambda: server.listeners[0].handshaking == 0, what="the handshakes given up")
        cid = Peer.login(url, "cid")  # room again
        member.send(cw.ListRequest())
        assert sorted(member.expect(cw.ListReply).nicks) == ["ana", "cid"]
        cid.close()


# --- The process ------------------------------------------------------------------------------


def test_sigterm_drains_what_the_socket_buffers_could_not_hold_then_closes_cleanly() -> None:
    # The receiver stops reading while far more is owed to it than the kernel's buffers hold
    # (the server still queues some: checked), then SIGTERM; it starts reading only after the
    # signal, and must still get everything, then a clean end of stream.
    with server_process("--flood-rate", "0", "--sendq", "64M") as proc:
        url = proc.urls[0]
        bob = Peer(url, sock=small_window_socket(url))
        bob.send(cw.Login(nick="bob"))
        bob.expect(cw.Accepted)
        ana = Peer.login(url, "ana")
        texts = [f"{i:04d}" + "x" * 9000 for i in range(1500)]  # 13.5 MB
        for text in texts:
            ana.send(cw.Message(text=text))
        wait_until(lambda: process_stats(proc)["relayed_messages"] == 1500, what="all accepted")
        assert process_stats(proc)["queued_bytes"] > 1 << 20  # beyond every socket buffer
        proc.process.send_signal(signal.SIGTERM)
        proc.wait_log(r"shutting down \(SIGTERM\)")
        time.sleep(1.0)
        stream, end = read_to_end(bob.sock)
        assert end == "eof"
        got = [e.text for e in decode_relays(stream) if isinstance(e, cw.MessageRelay)]
        assert got == texts
        assert proc.process.wait(10) == 0


@pytest.mark.slow
def test_a_thousand_clients_exchange_messages_and_nothing_is_lost() -> None:
    with server_process("--log-level", "warning") as proc:
        url = proc.urls[0]
        peers = [Peer.login(url, f"c{i}", timeout=30) for i in range(1000)]
        senders = peers[:10]
        for n in range(10):
            for i, peer in enumerate(senders):
                peer.send(cw.Message(text=f"{i}.{n}"))
        for k, peer in enumerate(peers):
            expected = 100 - (10 if k < 10 else 0)
            texts = [peer.expect(cw.MessageRelay).text for _ in range(expected)]
            for i in range(10):
                if i != k:
                    assert [t for t in texts if t.startswith(f"{i}.")] == [
                        f"{i}.{n}" for n in range(10)
                    ]
        for peer in peers:
            peer.close()
