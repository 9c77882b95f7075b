"""Faults survived, nothing lost (issue 6): processes killed mid-file, the server stopped with
work queued.

Every party that is killed is a real process (a client started with ``python``, or the real
``chatclient``), killed with SIGKILL so that it has no chance to say goodbye; the server is a
real process too, and its descriptors are counted through /proc to show nothing leaked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import chatwire as cw
from tests.support import ROOT, Peer, ServerProcess, server_process, spool_files, wait_until


def fds(proc: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{proc.process.pid}/fd"))


def spool_fds(proc: ServerProcess, spool_dir: Path) -> list[str]:
    return spool_files(proc.process.pid, spool_dir)


def python_client(script: str, *args: str) -> subprocess.Popen[str]:
    """A client process running ``script`` (Python, with chatwire and tests.support at hand)."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def wait_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == expected, f"client said {line!r}"


SENDER = """
import sys, time
import chatwire as cw
from tests.support import Peer
peer = Peer.login(sys.argv[1], "sender")
peer.send(cw.File(name="half.bin", size=50_000_000))
peer.send_raw(b"h" * 20_000_000)
print("sent half", flush=True)
time.sleep(60)
"""

SLOW_RECEIVER = """
import sys, time
import chatwire as cw
from tests.support import Peer
peer = Peer.login(sys.argv[1], "slow")
print("logged in", flush=True)
peer.sock.recv(100_000)
print("reading slowly", flush=True)
time.sleep(60)
"""


def test_a_sender_killed_mid_file_delivers_nothing_and_leaves_no_spool(tmp_path: Path) -> None:
    with server_process("--spool-dir", str(tmp_path)) as proc:
        url = proc.urls[0]
        ana, bob = Peer.login(url, "ana"), Peer.login(url, "bob")
        baseline = fds(proc)
        sender = python_client(SENDER, url)
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


def test_a_receiver_killed_mid_file_does_not_stop_the_others(tmp_path: Path) -> None:
    data = os.urandom(1 << 20) * 40  # 40 MiB: more than the slow receiver's socket buffers
    with server_process("--spool-dir", str(tmp_path), "--max-file-size", "64M") as proc:
        url = proc.urls[0]
        ana, bob = Peer.login(url, "ana", timeout=60), Peer.login(url, "bob", timeout=60)
        slow = python_client(SLOW_RECEIVER, url)
        wait_line(slow, "logged in")
        baseline = fds(proc)
        ana.send_file("big.bin", data)
        wait_line(slow, "reading slowly")
        start, received = bob.expect_file(timeout=60)
        assert start.size == len(data)
        assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
        assert len(spool_fds(proc, tmp_path)) == 1  # still held for the slow receiver
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
        wait_until(lambda: spool_fds(proc, tmp_path) == [], what="the spool released")
        wait_until(lambda: fds(proc) == baseline - 1, what="the receiver's socket released")
        bob.send(cw.Message(text="after"))
        assert ana.expect(cw.MessageRelay).text == "after"


def test_sigterm_drains_queued_messages_and_files_then_clients_see_a_clean_close(
    tmp_path: Path,
) -> None:
    # Documented in docs/reliability.md: on SIGTERM the server stops accepting and reading,
    # sends what it has queued for up to --drain-timeout seconds, then closes everyone.
    with server_process("--drain-timeout", "5", "--flood-rate", "0") as proc:
        url = proc.urls[0]
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatclient",
                url,
                "--nick",
                "watcher",
                "--json",
                "--downloads",
                str(tmp_path),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout))  # type: ignore[arg-type]
        reader.start()
        ana = Peer.login(url, "ana")
        wait_until(
            lambda: any("logged in as 'watcher'" in line for line in proc.log), what="the watcher"
        )
        payload = os.urandom(3 << 20)
        for i in range(300):
            ana.send(cw.Message(text=f"m{i:03d}"))
        ana.send_file("last.bin", payload)
        ana.send(cw.Message(text="after the file"))
        wait_until(lambda: _relayed(proc) >= 302, what="everything accepted")
        proc.process.send_signal(signal.SIGTERM)  # the watcher's stdin stays open: it does not quit
        assert watcher.wait(30) == 1  # documented: 1 when the server ends the connection
        reader.join(10)
        events = [json.loads(line) for line in lines if line.startswith("{")]
        texts = [e["text"] for e in events if e.get("event") == "message"]
        assert texts == [f"m{i:03d}" for i in range(300)] + ["after the file"]
        saved = [e for e in events if e.get("event") == "file-saved"]
        assert len(saved) == 1 and Path(saved[0]["path"]).read_bytes() == payload
        assert events[-1]["event"] == "disconnected" and events[-1]["expected"] is False
        assert "server closed the connection" in events[-1]["reason"]
        assert proc.process.wait(30) == 0
        assert any("shutting down (SIGTERM)" in line for line in proc.log)
        watcher.stdin.close()  # type: ignore[union-attr]


def _relayed(proc: ServerProcess) -> int:
    # Ask the server for its counters (SIGUSR1) and read the last stats line.
    proc.process.send_signal(signal.SIGUSR1)
    time.sleep(0.05)
    for line in reversed(proc.log):
        if "stats:" in line:
            fields = dict(part.split("=") for part in line.split("stats: ")[1].split())
            return int(fields["relayed_messages"]) + int(fields["relayed_files"])
    return 0
