"""Faults survived, nothing lost (issue 6): processes killed mid-file, the server stopped with
work queued.

Every party that is killed is a real process (a client started with ``python``, or the real
``chatclient``), killed with SIGKILL so that it has no chance to say goodbye; the server is a
real process too, and its descriptors are counted through /proc to show nothing leaked. Files
are built of blocks that all differ (`tests.support.pattern_block`) and checked by sha256, so a
relay that sends the right number of wrong bytes fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import chatwire as cw
from tests.support import (
    ROOT,
    Peer,
    ServerProcess,
    decode_relays,
    log_port,
    memory_kib,
    pattern_block,
    process_stats,
    read_to_end,
    server_process,
    small_window_socket,
    spool_files,
    wait_until,
)


def fds(proc: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{proc.process.pid}/fd"))


def spool_fds(proc: ServerProcess, spool_dir: Path) -> list[str]:
    return spool_files(proc.process.pid, spool_dir)


def python_client(script: str, *args: str) -> subprocess.Popen[str]:
    """A client process running ``script`` (Python, with chatwire and tests.support at hand)."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def wait_line(process: subprocess.Popen[str], expected: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith(expected), f"client said {line!r}"
    return line


def send_blocks(peer: Peer, name: str, blocks: int) -> str:
    """Send a file of ``blocks`` pattern blocks of 1 MiB; returns its sha256."""
    digest = hashlib.sha256()
    peer.send(cw.File(name=name, size=blocks << 20))
    for i in range(blocks):
        block = pattern_block(i)
        digest.update(block)
        peer.sock.sendall(block)
    peer.conn.account_file_data(blocks << 20)
    peer.send(cw.FileEnd())
    return digest.hexdigest()


def departures(proc: ServerProcess, who: str) -> list[str]:
    """The log lines saying why the connection of ``who`` (an address) ended."""
    return [x for x in proc.log if re.search(rf"{re.escape(who)}\b[^:]*: disconnected: ", x)]


# The sender's stdout says where it is: its local address (how the server's log names it).
SENDER = """
import sys, time
import chatwire as cw
from tests.support import Peer, log_port
peer = Peer.login(sys.argv[1], "sender")
print("address", log_port(peer.sock), flush=True)
peer.send(cw.File(name="half.bin", size=50_000_000))
peer.send_raw(b"h" * 20_000_000)
print("sent half", flush=True)
time.sleep(60)
"""

SLOW_RECEIVER = """
import sys, time
import chatwire as cw
from tests.support import Peer, log_port
peer = Peer.login(sys.argv[1], "slow")
print("address", log_port(peer.sock), flush=True)
peer.sock.recv(100_000)
print("reading slowly", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("ending", ["fin", "reset"])
def test_a_sender_killed_mid_file_delivers_nothing_and_leaves_no_spool(
    ending: str, tmp_path: Path
) -> None:
    # A killed process's sockets are closed by the kernel: with a FIN, or with a reset when
    # bytes sent to it were still unread. Either way one log line says it went and what of
    # its upload was discarded.
    with server_process("--spool-dir", str(tmp_path)) as proc:
        url = proc.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        baseline = fds(proc)
        sender = python_client(SENDER, url)
        address = wait_line(sender, "address").split()[1]
        if ending == "reset":
            ana.send(cw.Message(text="never read"))  # left unread: the kernel will reset
            assert bob.expect(cw.MessageRelay).text == "never read"  # sent to all by now
        wait_line(sender, "sent half")
        wait_until(lambda: len(spool_fds(proc, tmp_path)) == 1, what="the upload to be spooling")
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
        for peer in (ana, bob):
            peer.nothing_for(0.5)  # spec 3.1.4: nothing of the file, to anyone
        wait_until(lambda: fds(proc) == baseline, what="every descriptor of the sender released")
        assert spool_fds(proc, tmp_path) == [] and list(tmp_path.iterdir()) == []
        ana.send(cw.ListRequest())
        assert sorted(ana.expect(cw.ListReply).nicks) == ["ana", "bob"]  # the sender is gone
        (line,) = departures(proc, address)
        reason = "reset by the peer" if ending == "reset" else "closed by the client inside a frame"
        assert reason in line, line
        assert re.search(r"file 'half\.bin' discarded \(\d+ of 50000000 bytes received\)", line)


def test_a_receiver_killed_mid_file_does_not_stop_the_others(tmp_path: Path) -> None:
    blocks = 40  # 40 MiB: more than the slow receiver's socket buffers
    with server_process("--spool-dir", str(tmp_path), "--max-file-size", "64M") as proc:
        url = proc.urls[0]
        ana, bob = Peer.login(url, "ana", timeout=60), Peer.login(url, "bob", timeout=60)
        slow = python_client(SLOW_RECEIVER, url)
        address = wait_line(slow, "address").split()[1]
        baseline = fds(proc)
        before = memory_kib(proc.process.pid, "VmHWM")
        expected = send_blocks(ana, "big.bin", blocks)
        wait_line(slow, "reading slowly")
        start, received = bob.expect_file(timeout=60)
        assert start.size == blocks << 20
        assert hashlib.sha256(received).hexdigest() == expected
        assert len(spool_fds(proc, tmp_path)) == 1  # still held for the slow receiver
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
        wait_until(lambda: spool_fds(proc, tmp_path) == [], what="the spool released")
        wait_until(lambda: fds(proc) == baseline - 1, what="the receiver's socket released")
        bob.send(cw.Message(text="after"))
        assert ana.expect(cw.MessageRelay).text == "after"
        growth = memory_kib(proc.process.pid, "VmHWM") - before
        assert growth < 32 * 1024, f"server peak RSS grew {growth} KiB relaying 40 MiB"
        wait_until(lambda: len(departures(proc, address)) == 1, what="the receiver's departure")
        assert re.search(r"connection (reset by the peer|lost)", departures(proc, address)[0])


# --- The server stopped with SIGTERM while work is queued ---------------------------------------

DRAIN = 10.0  # seconds; more than the 5 s flush time-out, which used to cap it


def chatclient(url: str, nick: str, downloads: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "chatclient", url, "--nick", nick]
    return subprocess.Popen(
        [*command, "--downloads", str(downloads), *extra],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(downloads)},
    )


def test_sigterm_drains_what_is_queued_until_the_deadline_then_cuts_off_the_rest(
    tmp_path: Path,
) -> None:
    # Documented in docs/reliability.md: on SIGTERM the server stops accepting and reading,
    # sends what it has queued, closing each client (cleanly) once it has everything, and at
    # --drain-timeout cuts off whoever is still owed bytes.
    downloads = {name: tmp_path / name for name in ("json", "plain")}
    for folder in downloads.values():
        folder.mkdir()
    with server_process(
        "--drain-timeout", str(DRAIN), "--flood-rate", "0", "--max-file-size", "64M"
    ) as proc:
        url = proc.urls[0]
        # Two real clients that read as they should, one scripted (JSON) and one plain.
        watcher = chatclient(url, "watcher", downloads["json"], "--json")
        plain = chatclient(url, "plain", downloads["plain"], "--listen")
        outputs: dict[str, list[str]] = {"watcher": [], "plain": []}
        readers = [
            threading.Thread(target=lambda p=p, k=k: outputs[k].extend(p.stdout))  # type: ignore[misc]
            for k, p in (("watcher", watcher), ("plain", plain))
        ]
        for reader in readers:
            reader.start()
        # A client that stops reading with far more queued than the socket buffers hold, and
        # reads it all only after the old 5 s cap has passed; one that never reads again.
        slow = Peer(url, sock=small_window_socket(url))
        slow.send(cw.Login(nick="slow"))
        slow.expect(cw.Accepted)
        never = Peer(url, sock=small_window_socket(url))
        never.send(cw.Login(nick="never"))
        never.expect(cw.Accepted)
        ana = Peer.login(url, "ana")
        for nick in ("watcher", "plain"):
            proc.wait_log(rf"logged in as '{nick}'")
        for i in range(300):
            ana.send(cw.Message(text=f"m{i:03d}"))
        digest = send_blocks(ana, "last.bin", 24)
        ana.send(cw.Message(text="after the file"))
        wait_until(
            lambda: process_stats(proc)["relayed_messages"] >= 301, what="everything accepted"
        )
        queued = process_stats(proc)
        # the file (by reference) still waits for both silent clients: beyond their buffers
        assert queued["queued_files"] >= 2, queued
        proc.process.send_signal(signal.SIGTERM)  # the clients' stdin stays open: no quit
        signalled = time.monotonic()
        proc.wait_log(r"shutting down \(SIGTERM\)")
        slow.send(cw.Message(text="typed during the drain"))  # never read: reading stopped
        time.sleep(6.0)  # past the old 5 s flush time-out
        stream, end = read_to_end(slow.sock)
        assert end == "eof", "the slow reader's stream ended with a reset, not a clean close"
        events = decode_relays(stream)
        texts = [e.text for e in events if isinstance(e, cw.MessageRelay)]
        assert texts == [f"m{i:03d}" for i in range(300)] + ["after the file"]
        (relay,) = [e for e in events if isinstance(e, cw.FileRelay)]
        data = b"".join(bytes(e.data) for e in events if isinstance(e, cw.FileData))
        assert relay.size == len(data) == 24 << 20
        assert hashlib.sha256(data).hexdigest() == digest
        # The never-reader keeps the server until the deadline, and no longer.
        assert proc.process.wait(DRAIN + 10) == 0
        took = time.monotonic() - signalled
        assert DRAIN - 0.5 < took < DRAIN + 3, f"the server exited {took:.1f} s after SIGTERM"
        cut = proc.wait_log(r"drain deadline \(10 s\) passed: cutting off 1 client\(s\) with")
        unsent = int(re.search(r"with (\d+) bytes unsent", cut).group(1))  # type: ignore[union-attr]
        assert unsent > 0
        assert not departures(proc, log_port(slow.sock))  # shutdown's are debug lines
        # The real clients got everything, saw the server close, and said so.
        assert watcher.wait(15) == 1 and plain.wait(15) == 1  # documented: 1 when the server ends
        for reader in readers:
            reader.join(10)
        events_json = [json.loads(line) for line in outputs["watcher"] if line.startswith("{")]
        texts = [e["text"] for e in events_json if e.get("event") == "message"]
        assert texts == [f"m{i:03d}" for i in range(300)] + ["after the file"]
        saved = [e for e in events_json if e.get("event") == "file-saved"]
        assert len(saved) == 1
        assert hashlib.sha256(Path(saved[0]["path"]).read_bytes()).hexdigest() == digest
        assert events_json[-1]["event"] == "disconnected" and events_json[-1]["expected"] is False
        assert (
            outputs["plain"][-1]
            .rstrip("\n")
            .endswith("disconnected: the server closed the connection")
        ), outputs["plain"][-3:]
        plain_saved = list(downloads["plain"].iterdir())
        assert len(plain_saved) == 1
        assert hashlib.sha256(plain_saved[0].read_bytes()).hexdigest() == digest
        for process in (watcher, plain):
            process.stdin.close()  # type: ignore[union-attr]
        never.close()
        slow.close()
