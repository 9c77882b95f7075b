"""Codec throughput benchmark (single core): decode and encode of short msg frames, and file data
through the decoder. A benchmark, not a test: it prints figures, it asserts nothing.

    .venv/bin/python bench/bench_codec.py [--reps 7] [--json FILE]

Each figure is the median of --reps runs (min-max shown). Workloads:
- decode msg (server side): client ``msg`` frames with 100-byte texts, fed in 64 KiB chunks as a
  socket would deliver them; frames per second through ``receive_data`` + ``next_event``.
- decode msg-relay (client side): the same for relayed ``msg <nick> <text>`` frames.
- encode msg: ``Connection.send(Message(...))`` of pre-built events (state checks included).
- encode+build msg: the same, building each event first (what a client does per line).
- encode relay: stateless ``chatwire.encode(MessageRelay(...))`` (what a server does once per
  broadcast).
- file data: a 1 GiB file fed in 256 KiB chunks; MB/s of FileData handed out (as memoryviews).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import chatwire as cw

TEXT = "x" * 100
CHUNK = 64 * 1024


def logged_in(role: cw.Role) -> cw.Connection:
    conn = cw.Connection(role)
    if role is cw.Role.SERVER:
        conn.receive_data(b"3         ana")
        conn.next_event()
        conn.send(cw.Accepted())
    else:
        conn.send(cw.Login(nick="ana"))
        conn.receive_data(b"ACC       ")
        conn.next_event()
    return conn


def chunks_of(frame: bytes, count: int) -> list[bytes]:
    stream = frame * count
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def decode(role: cw.Role, frame: bytes, count: int) -> float:
    chunks = chunks_of(frame, count)
    conn = logged_in(role)
    need = cw.NEED_DATA
    seen = 0
    start = time.perf_counter()
    for chunk in chunks:
        conn.receive_data(chunk)
        next_event = conn.next_event
        while next_event() is not need:
            seen += 1
    elapsed = time.perf_counter() - start
    assert seen == count, (seen, count)
    return count / elapsed


def encode_send(count: int) -> float:
    conn = logged_in(cw.Role.CLIENT)
    event = cw.Message(text=TEXT)
    send = conn.send
    start = time.perf_counter()
    for _ in range(count):
        send(event)
    return count / (time.perf_counter() - start)


def encode_build_send(count: int) -> float:
    conn = logged_in(cw.Role.CLIENT)
    send = conn.send
    message = cw.Message
    start = time.perf_counter()
    for _ in range(count):
        send(message(text=TEXT))
    return count / (time.perf_counter() - start)


def encode_relay(count: int) -> float:
    event = cw.MessageRelay(sender="ana", text=TEXT)
    encode = cw.encode
    start = time.perf_counter()
    for _ in range(count):
        encode(event)
    return count / (time.perf_counter() - start)


def file_data(size: int = 1 << 30) -> float:
    chunk = bytes(256 * 1024)
    conn = logged_in(cw.Role.SERVER)
    conn.receive_data(b"file 5    a.bin" + b"%-10d" % size)
    conn.next_event()
    seen = 0
    need = cw.NEED_DATA
    start = time.perf_counter()
    for _ in range(size // len(chunk)):
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not need:
            if type(event) is cw.FileData:
                seen += len(event.data)
    elapsed = time.perf_counter() - start
    assert seen == size
    return size / elapsed / 1e6


WORKLOADS: dict[str, tuple[str, Callable[[], float]]] = {
    "decode msg (frames/s)": (
        "500000",
        lambda: decode(cw.Role.SERVER, cw.encode(cw.Message(text=TEXT)), 300_000),
    ),
    "decode msg-relay (frames/s)": (
        "500000",
        lambda: decode(
            cw.Role.CLIENT, cw.encode(cw.MessageRelay(sender="ana", text=TEXT)), 300_000
        ),
    ),
    "encode msg, send() (frames/s)": ("1000000", lambda: encode_send(500_000)),
    "encode msg, build+send() (frames/s)": ("", lambda: encode_build_send(500_000)),
    "encode relay, encode() (frames/s)": ("1000000", lambda: encode_relay(500_000)),
    "file data (MB/s)": ("2000", file_data),
}


def yardstick() -> float:
    """Millions of loop iterations per second of this Python on this CPU right now: a shared
    machine's speed moves by 2x or more between hours, so figures from different days are
    compared through this, never directly."""
    start = time.perf_counter()
    sum(range(10_000_000))
    return 10.0 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    print(
        f"# {platform.python_implementation()} {platform.python_version()}"
        f" on {platform.machine()}, {time.strftime('%Y-%m-%d')}, median of {args.reps}"
    )
    speed = statistics.median(yardstick() for _ in range(5))
    print(f"# machine yardstick: sum(range(10**7)) at {speed:.1f} M iterations/s")
    print("| workload | median | min-max | target |\n|---|---|---|---|")
    for name, (target, run) in WORKLOADS.items():
        values = [run() for _ in range(args.reps)]
        median = statistics.median(values)
        results[name] = {"median": median, "min": min(values), "max": max(values), "target": target}
        print(
            f"| {name} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f}"
            f" | {target and f'{int(target):,}'} |"
        )
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"yardstick_M_per_s": speed, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
