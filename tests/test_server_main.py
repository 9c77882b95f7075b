"""Tests of chatserver.__main__: the command line, as a user runs it."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys

import chatwire as cw
from chatserver.__main__ import build_parser, raise_file_limit
from tests.support import ROOT, Peer, server_process


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatserver", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,  # the tests look at the exit status themselves
    )


def test_help_lists_the_options() -> None:
    result = run("--help")
    assert result.returncode == 0
    for option in (
        "--listen",
        "--spool-dir",
        "--max-file-size",
        "--sendq",
        "--login-timeout",
        "--notices",
        "--log-level",
        "--drain-timeout",
        "--handshake-timeout",
        "--upload-min-rate",
        "--upload-rate-window",
        "--spool-quota-per-ip",
    ):
        assert option in result.stdout


def test_bad_settings_exit_2_with_a_message() -> None:
    result = run("--listen", "ftp://x:1")
    assert result.returncode == 2 and "unknown scheme" in result.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    result = run("--listen", f"tcp://127.0.0.1:{busy.getsockname()[1]}")
    assert result.returncode == 2 and "in use" in result.stderr
    busy.close()
    assert run("--max-file-size", "lots").returncode == 2


def test_it_prints_where_it_listens_and_serves() -> None:
    with server_process("--welcome", "hi", "--notices") as proc:
        assert proc.urls[0].startswith("tcp://127.0.0.1:")
        peer = Peer(proc.urls[0])
        peer.send(cw.Login(nick="ana"))
        assert peer.next() == cw.Accepted()
        assert peer.next() == cw.Notice(text="hi")
        proc.wait_log(r"open files limit: \d+")
    assert proc.process.returncode == 0


def test_defaults_are_the_documented_ones() -> None:
    args = build_parser().parse_args([])
    assert args.listen is None  # then tcp://:1234, all interfaces
    assert args.max_file_size == 4 << 30 and args.sendq == 4 << 20
    assert args.upload_min_rate == 16 << 10 and args.upload_rate_window == 30
    assert args.spool_quota_per_ip == 0 and args.handshake_timeout == 10


def test_raise_file_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard > 1024:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert raise_file_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(hard, 1 << 20)
    finally:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (max(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]), hard)
        )
