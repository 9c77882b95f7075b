#!/usr/bin/env python3
"""How fast can this machine fill a spool? A characterisation, not a test of chatserver.

Store-and-forward writes every uploaded byte into the page cache of a spool file before it is
relayed (spec 5.4), so no upload can run faster than the machine fills fresh page cache. On a
virtual machine that hands freed memory back to its host (free page reporting), that rate
depends on how long the memory has been free: the host must fault the pages in again on first
touch. This script writes SIZE bytes into a fresh anonymous file in the spool directory, the
way a spool is written, in 1 MiB writes:

- *warm*: right after the previous file of the same size was closed (its pages are reused);
- *cold*: after the memory has been free for PAUSE seconds.

and prints the medians (and ranges) of REPS runs of each, plus a loopback TCP stream of SIZE
bytes for scale, alternating so that drift hits all three alike. Run it on an otherwise idle
machine: `.venv/bin/python bench/bench_spool.py` (about a minute).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time

MIB = 1 << 20


def fill(directory: str, size: int) -> float:
    """Seconds to write ``size`` bytes into a new anonymous file in ``directory``."""
    block = memoryview(os.urandom(MIB))
    with tempfile.TemporaryFile(dir=directory) as spool:
        fd = spool.fileno()
        start = time.perf_counter()
        left = size
        while left:
            left -= os.write(fd, block[: min(left, MIB)])
        return time.perf_counter() - start


def stream(size: int) -> float:
    """Seconds for one loopback TCP stream of ``size`` bytes (a forked writer, 1 MiB reads)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        pid = os.fork()
        if pid == 0:  # the writer
            try:
                with socket.create_connection(("127.0.0.1", port)) as out:
                    block = memoryview(os.urandom(MIB))
                    left = size
                    while left:
                        left -= out.send(block[: min(left, MIB)])
            finally:
                os._exit(0)
        conn, _ = listener.accept()
        with conn:
            buffer = memoryview(bytearray(MIB))
            start = time.perf_counter()
            got = 0
            while got < size:
                n = conn.recv_into(buffer)
                if not n:
                    break
                got += n
            elapsed = time.perf_counter() - start
        os.waitpid(pid, 0)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="spool directory")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pause", type=float, default=6.0, help="seconds before a cold fill")
    args = parser.parse_args()
    size = args.size_mib * MIB
    runs: dict[str, list[float]] = {"cold fill": [], "warm fill": [], "TCP stream": []}
    for _ in range(args.reps):
        time.sleep(args.pause)
        runs["cold fill"].append(size / fill(args.dir, size))
        runs["warm fill"].append(size / fill(args.dir, size))
        runs["TCP stream"].append(size / stream(size))
    print(f"{args.size_mib} MiB into {args.dir}, {args.reps} runs each (GB/s, median and range):")
    for name, rates in runs.items():
        gb = [r / 1e9 for r in rates]
        print(f"  {name:10s} {statistics.median(gb):5.2f}  ({min(gb):.2f}-{max(gb):.2f})")


if __name__ == "__main__":
    main()
