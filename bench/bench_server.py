"""Server benchmark: chatserver (and the IRC servers ngIRCd and InspIRCd, where installed) under
the same C load generator, side by side in one run. A benchmark, not a test: it prints figures.

    .venv/bin/python bench/bench_server.py                 # full matrix, 3 repetitions (~20 min)
    .venv/bin/python bench/bench_server.py --quick         # 1 repetition, short runs (~2 min)
    .venv/bin/python bench/bench_server.py --only fanout,connect --peers chatserver,inspircd

It builds bench/loadgen/loadgen.c with ``cc -O2`` into bench-results/bin/, starts a fresh server
for every run (its own session, stopped with SIGTERM, then SIGKILL), waits until it listens on
127.0.0.1, runs one workload, and stops it. Results: bench-results/<timestamp>/results.jsonl (one
JSON object per run) and table.md (medians with min-max), also printed. bench/README.md explains
every figure and how it relates to the targets of issues 3 and 7.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT_ROOT = ROOT / "bench-results"
LOADGEN_SRC = HERE / "loadgen" / "loadgen.c"
PEER_CONF = HERE / "peers"

WORKLOADS = ("tcp", "fanout", "connect", "file", "filechat", "slow")
PEERS = ("chatserver", "ngircd", "inspircd")
GIB = 1 << 30
MIB = 1 << 20

Record = dict[str, Any]


# --------------------------------------------------------------------------- settings


@dataclass
class Matrix:
    """What to run; the defaults are the workloads of issues 3 and 7."""

    reps: int = 3
    fanout: tuple[tuple[int, int], ...] = ((100, 10), (1000, 10), (1000, 1))
    window: int = 64
    lat_every: int = 10
    payload: int = 100
    fanout_secs: float = 10.0
    connect: tuple[int, ...] = (1000, 5000, 10000)
    handshakes: int = 10
    file_size: int = GIB
    file_receivers: tuple[int, ...] = (1, 10)
    filechat_size: int = GIB
    filechat_receivers: int = 10
    filechat_chatters: int = 4
    filechat_rate: float = 50.0
    # fan-out at full load with some clients that stop reading: N, S, stuck (issue 7: "the
    # slow-consumer and memory bounds still hold at full load")
    slow: tuple[int, int, int] = (1000, 10, 10)
    # not shortened by --quick: a stuck client overflows after ~5 s (the SendQ and both sides'
    # socket buffers fill at ~1.7 MB/s per client at full load)
    slow_secs: float = 10.0
    tcp_bytes: int = 2 * GIB
    # idle seconds before each file relay: this VM hands memory that has been free for about 2 s
    # back to its host, and an upload into such memory fills the page cache at a fifth of the
    # speed (bench/bench_spool.py); waiting makes every relay meet the same state, so the runs of
    # chatserver and of the bare relay stay comparable, whichever ran just before
    file_settle: float = 5.0

    @classmethod
    def quick(cls) -> Matrix:
        return cls(
            reps=1,
            fanout_secs=3.0,
            connect=(1000,),
            file_size=256 * MIB,
            filechat_size=256 * MIB,
            tcp_bytes=GIB,
        )


@dataclass
class Peer:
    """A server under test: how to start it and which protocol it speaks."""

    name: str
    proto: str  # "chatwire" or "irc"
    argv: Callable[[int, Path], list[str]]
    shell: bool = False
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)


def chatserver_peer(server_cmd: str | None, label: str, max_clients: int) -> Peer:
    if server_cmd:
        if "{port}" not in server_cmd:
            sys.exit("--server-cmd needs {port} where the port goes")
        return Peer(
            label,
            "chatwire",
            lambda port, _rundir: ["/bin/sh", "-c", server_cmd.replace("{port}", str(port))],
            shell=True,
            version=server_cmd,
        )
    python = sys.executable
    argv = [python, "-m", "chatserver"]
    # flood control off, as for the IRC servers (the option exists from the flood-control commit)
    helptext = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=30, check=False
    ).stdout
    extra = ["--flood-rate", "0"] if "--flood-rate" in helptext else []
    # its default bound is half the open-files limit (for spool files): room for the largest run
    if "--max-clients" in helptext:
        extra += ["--max-clients", str(max_clients)]

    def start(port: int, _rundir: Path) -> list[str]:
        listen = f"tcp://127.0.0.1:{port}"
        return [*argv, "--listen", listen, "--log-level", "warning", *extra]

    version = " ".join(filter(None, [git_describe(), shlex.join(extra)]))
    return Peer(label, "chatwire", start, version=version)


def render_conf(template: str, port: int, rundir: Path, out: Path) -> Path:
    text = (PEER_CONF / template).read_text()
    out.write_text(text.replace("{port}", str(port)).replace("{rundir}", str(rundir)))
    return out


def ngircd_peer(exe: str) -> Peer:
    def start(port: int, rundir: Path) -> list[str]:
        (rundir / "conf.d").mkdir(exist_ok=True)
        if os.geteuid() == 0:  # ngIRCd will not run as root: it switches to "nobody" itself
            rundir.chmod(0o777)
        conf = render_conf("ngircd.conf", port, rundir, rundir / "ngircd.conf")
        return [exe, "-n", "-f", str(conf)]

    return Peer("ngircd", "irc", start, version=first_line([exe, "--version"]))


def inspircd_peer(exe: str) -> Peer:
    def start(port: int, rundir: Path) -> list[str]:
        conf = render_conf("inspircd.conf", port, rundir, rundir / "inspircd.conf")
        argv = [exe, "--config", str(conf), "--nofork", "--nopid"]
        if os.geteuid() == 0:
            argv.append("--runasroot")
        return argv

    return Peer("inspircd", "irc", start, version=first_line([exe, "--version"]))


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else ""


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return "git " + out.stdout.strip() if out.returncode == 0 else ""


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / (1 << 20):.0f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- build


def build_loadgen(bindir: Path) -> Path:
    """cc -O2 the load generator (warnings are errors here: the source is kept clean)."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / "loadgen"
    if exe.exists() and exe.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return exe
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("need a C compiler (cc) to build the load generator")
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(LOADGEN_SRC)]
    print("building:", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    selftest = subprocess.run([str(exe), "--selftest"], capture_output=True, text=True, check=False)
    if selftest.returncode != 0:
        sys.exit(f"load generator self-test failed: {selftest.stdout}{selftest.stderr}")
    return exe


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_inode(port: int) -> int | None:
    """The inode of the socket listening on 127.0.0.1:port (or any address), from /proc/net."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return int(inode)
    return None


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # field 6: session id
            pids.append(int(entry.name))
    return pids


def socket_owner(sid: int, inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in session_pids(sid):
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) == target:
                    return pid
        except OSError:
            continue
    return None


class Server:
    """One fresh server process (in its own session) for one run."""

    def __init__(self, peer: Peer, rundir: Path) -> None:
        self.peer = peer
        self.rundir = rundir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.log = rundir / "server.log"

    def start(self, timeout: float = 30.0) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        argv = self.peer.argv(self.port, self.rundir)
        with self.log.open("wb") as log:
            log.write(f"# {shlex.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.rundir if self.peer.proto == "irc" else ROOT,
                start_new_session=True,
                env={**os.environ, **self.peer.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inode = listening_inode(self.port)
            if inode is not None:
                self.pid = socket_owner(self.proc.pid, inode) or self.proc.pid
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace").splitlines()[-5:]
        raise RuntimeError(
            f"{self.peer.name} did not listen on 127.0.0.1:{self.port}: " + " | ".join(tail)
        )

    def alive(self) -> bool:
        return self.pid > 0 and Path(f"/proc/{self.pid}").exists()

    def stop(self) -> None:
        if self.proc is None:
            return
        sid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        # the leader may be gone while something it started is not: the whole session goes
        for _ in range(50):
            if not session_pids(sid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        trim(self.log, 1 << 20)


def count_lines(path: Path, text: str) -> int:
    """Lines of a server log that contain ``text``."""
    try:
        with path.open(errors="replace") as f:
            return sum(text in line for line in f)
    except OSError:
        return 0


def trim(path: Path, keep: int) -> None:
    """Keep the last `keep` bytes of a log (an IRC server logs every write error)."""
    try:
        if path.stat().st_size > keep:
            with path.open("rb") as f:
                f.seek(-keep, os.SEEK_END)
                data = f.read()
            path.write_bytes(data)
    except OSError:
        pass


# --------------------------------------------------------------------------- running


class Bench:
    def __init__(
        self, loadgen: Path, outdir: Path, matrix: Matrix, peers: list[Peer], only: set[str]
    ) -> None:
        self.loadgen = loadgen
        self.outdir = outdir
        self.m = matrix
        self.peers = peers
        self.only = only
        self.results: list[Record] = []
        self.jsonl = outdir / "results.jsonl"
        self.runlog = outdir / "run.log"
        self.counter = 0

    def say(self, text: str) -> None:
        print(text, flush=True)
        with self.runlog.open("a") as f:
            f.write(text + "\n")

    def keep(self, rec: Record) -> None:
        self.results.append(rec)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    def loadgen_run(self, args: list[str], timeout: float) -> Record | None:
        cmd = [str(self.loadgen), *args]
        with self.runlog.open("a") as f:
            f.write("$ " + shlex.join(cmd) + "\n")
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            self.say(f"!! load generator hit the {timeout:.0f} s limit: {shlex.join(args)}")
            return None
        for line in out.stderr.splitlines():
            self.say("   " + line)
        for line in reversed(out.stdout.splitlines()):
            if line.startswith("{"):
                rec: Record = json.loads(line)
                return rec
        self.say(f"!! no result from the load generator (exit {out.returncode})")
        return None

    def one(
        self,
        peer: Peer,
        workload: str,
        *,
        config: str,
        rep: int,
        args: list[str],
        timeout: float,
        extra: Record | None = None,
    ) -> Record | None:
        """Fresh server, one load generator run, stop; returns the record (None if none), which
        also holds `extra` (results.jsonl gets it whole)."""
        self.counter += 1
        rundir = self.outdir / "servers" / f"{self.counter:03d}-{peer.name}-{workload}-{config}"
        server = Server(peer, rundir)
        try:
            server.start()
        except RuntimeError as e:
            self.say(f"!! {e}")
            return None
        try:
            common = ["-p", peer.proto, "-P", str(server.port), "--server-pid", str(server.pid)]
            rec = self.loadgen_run([*common, "--label", peer.name, *args], timeout)
            alive = server.alive()
        finally:
            server.stop()
        if rec is None:
            return None
        # the benchmark's workload name ("slow" is the load generator's fanout with --stuck)
        rec.update(workload=workload, peer=peer.name, config=config, rep=rep, **(extra or {}))
        rec["server_alive_at_end"] = alive
        rec["server_log_sendq"] = count_lines(server.log, "SendQ exceeded")
        if not alive:
            self.say(f"!! {peer.name} was gone at the end of the run (log: {server.log})")
        self.keep(rec)
        time.sleep(0.2)
        return rec

    def run(self) -> None:
        m = self.m
        if "tcp" in self.only:
            self.say("## loopback TCP, one stream")
            for rep in range(1, m.reps + 1):
                rec = self.loadgen_run(["-w", "tcp", "--tcp-bytes", str(m.tcp_bytes)], 120)
                if rec:
                    rec.update(peer="-", config=f"{m.tcp_bytes >> 20}MiB", rep=rep)
                    self.keep(rec)
        if "fanout" in self.only:
            self.say(f"## fan-out W={m.window} P={m.payload} D={m.fanout_secs:g}s")
            for n, s in m.fanout:
                for rep in range(1, m.reps + 1):
                    for peer in self.peers:
                        args = ["-w", "fanout", "-N", str(n), "-S", str(s), "-W", str(m.window)]
                        args += ["-s", str(m.payload), "-D", str(m.fanout_secs)]
                        args += ["--lat-every", str(m.lat_every)]
                        self.one(
                            peer,
                            "fanout",
                            config=f"{n}:{s}",
                            rep=rep,
                            args=args,
                            timeout=m.fanout_secs + 240,
                        )
        if "connect" in self.only:
            self.connect_all()
        chat_peers = [p for p in self.peers if p.proto == "chatwire"]
        if "file" in self.only:
            self.say("## file relay")
            for r in m.file_receivers:
                # R = 1 reads every byte into the load generator's buffer, as the stream meter's
                # reader does, so the two are comparable; R = 10 checks samples and discards the
                # rest in the kernel, so that reading 10 GiB is not the load generator's limit.
                # Content is checked byte for byte by the test suite (sha256 of relayed files).
                verify = "none" if r == 1 else "sample"
                config = f"{m.file_size >> 20}MiB:{r}"
                for rep in range(1, m.reps + 1):
                    for peer in chat_peers:
                        time.sleep(m.file_settle)
                        # The loopback stream varies by 1.5x between minutes here: each relay is
                        # compared with a stream of the same size measured just before it.
                        stream = self.loadgen_run(
                            ["-w", "tcp", "--tcp-bytes", str(m.file_size)], 120
                        )
                        args = ["-w", "file", "-F", str(m.file_size), "-R", str(r)]
                        args += ["--verify", verify, "--file-timeout", "300", "--stall", "30"]
                        self.one(
                            peer,
                            "file",
                            config=config,
                            rep=rep,
                            args=args,
                            timeout=420,
                            extra=paired(stream),
                        )
                    # The machine's own ceiling for the same relay, paired with the same kind of
                    # stream (bench/README.md, "bare relay").
                    time.sleep(m.file_settle)
                    stream = self.loadgen_run(["-w", "tcp", "--tcp-bytes", str(m.file_size)], 120)
                    args = ["-w", "relay", "-F", str(m.file_size), "-R", str(r), "--verify", verify]
                    rec = self.loadgen_run(args, 420)
                    if rec is not None:
                        rec.update(workload="file", peer=BARE_RELAY, config=config, rep=rep)
                        rec["server_cpu_util"] = rec.get("relay_cpu_util")
                        rec["loadgen_cpu_util"] = rec.get("readers_cpu_util")
                        self.keep(rec | paired(stream))
        if "slow" in self.only:
            n, s, k = m.slow
            self.say(f"## fan-out with {k} clients that stop reading")
            for rep in range(1, m.reps + 1):
                for peer in chat_peers:
                    args = ["-w", "fanout", "-N", str(n), "-S", str(s), "-W", str(m.window)]
                    args += ["-s", str(m.payload), "-D", str(m.slow_secs)]
                    args += ["--lat-every", str(m.lat_every), "--stuck", str(k)]
                    timeout = m.slow_secs + 240
                    self.one(
                        peer, "slow", config=f"{n}:{s}:{k}", rep=rep, args=args, timeout=timeout
                    )
        if "filechat" in self.only:
            self.say("## file relay with chat")
            for rep in range(1, m.reps + 1):
                for peer in chat_peers:
                    args = ["-w", "filechat", "-F", str(m.filechat_size)]
                    args += ["-R", str(m.filechat_receivers), "-S", str(m.filechat_chatters)]
                    args += ["--rate", str(m.filechat_rate), "-s", str(m.payload)]
                    args += ["--verify", "sample", "--file-timeout", "300", "--stall", "30"]
                    config = f"{m.filechat_size >> 20}MiB:{m.filechat_receivers}"
                    self.one(peer, "filechat", config=config, rep=rep, args=args, timeout=480)

    def connect_all(self) -> None:
        m = self.m
        self.say(f"## connections K={m.handshakes}")
        given_up: set[str] = set()
        for c in m.connect:
            for rep in range(1, m.reps + 1):
                for peer in self.peers:
                    if peer.name in given_up:
                        continue
                    args = ["-w", "connect", "-N", str(c), "-K", str(m.handshakes)]
                    args += ["--setup-timeout", "60", "--hold", "1"]
                    rec = self.one(peer, "connect", config=str(c), rep=rep, args=args, timeout=150)
                    if rec is None or not rec.get("ok"):
                        self.say(f"!! {peer.name}: C={c} incomplete; larger C skipped for it")
                        given_up.add(peer.name)


# --------------------------------------------------------------------------- table


def paired(stream: Record | None) -> Record:
    """The stream a relay is compared with (issue 7), as fields of the relay's record."""
    rate = stream.get("bytes_per_s") if stream else None
    return {"paired_tcp_Bps": rate} if rate else {}


def pick(results: Iterable[Record], **where: Any) -> list[Record]:
    return [r for r in results if all(r.get(k) == v for k, v in where.items())]


def values(recs: list[Record], key: str, scale: float = 1.0) -> list[float]:
    out = []
    for r in recs:
        v = r.get(key)
        if isinstance(v, int | float) and v >= 0:
            out.append(float(v) * scale)
    return out


def med(vals: list[float]) -> float | None:
    return statistics.median(vals) if vals else None


def fmt_num(v: float, digits: int) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f} k"
    return f"{v:,.{digits}f}"


def cell(vals: list[float], digits: int = 1) -> str:
    """median (min-max) over the repetitions."""
    if not vals:
        return "-"
    m = fmt_num(statistics.median(vals), digits)
    if len(vals) == 1:
        return m
    return f"{m} ({fmt_num(min(vals), digits)}-{fmt_num(max(vals), digits)})"


def total(recs: list[Record], key: str) -> str:
    vals = [int(r.get(key) or 0) for r in recs]
    return str(sum(vals)) if recs else "-"


# What one client that stops reading may cost chatserver (docs/reliability.md, "Resource
# bounds"): its SendQ (default --sendq, 4 MiB) plus 300 KiB of heads, a read and objects.
PER_CLIENT_MIB = 4 + 300 / 1024
SATURATED = 0.9  # load generator CPU (cores) from which a figure is a lower bound
# The file table's row for `loadgen -w relay`: one C thread that splices the upload into a
# spool and sendfiles it to the receivers, no protocol (the file relay's ceiling on this machine)
BARE_RELAY = "bare C relay"


def cpu_cell(recs: list[Record], key: str) -> str:
    text = cell(values(recs, key), 2)
    if key == "loadgen_cpu_util" and any(v >= SATURATED for v in values(recs, key)):
        text += " (!)"
    return text


def peer_order(results: list[Record]) -> list[str]:
    seen: list[str] = []
    for r in results:
        p = r.get("peer")
        if isinstance(p, str) and p != "-" and p not in seen:
            seen.append(p)
    return seen


def tcp_rate(results: list[Record]) -> float | None:
    return med(values(pick(results, workload="tcp"), "bytes_per_s"))


def file_ratios(runs: list[Record], receivers: int, size: int, rate: float | None) -> list[float]:
    """Each relay against one loopback stream (issue 7): for one receiver its time over the
    stream's time for the same bytes (target <= 2.2), for more its aggregate rate over the
    stream's rate (target >= 2). The stream is the one measured just before that relay, else the
    run's median stream."""
    out: list[float] = []
    for rec in runs:
        stream = rec.get("paired_tcp_Bps") or rate
        if not stream or not rec.get("time_s"):
            continue
        if receivers == 1:
            out.append(float(rec["time_s"]) / (size / float(stream)))
        elif rec.get("aggregate_Bps"):
            out.append(float(rec["aggregate_Bps"]) / float(stream))
    return out


def bare_relay(results: list[Record], m: Matrix, receivers: int, rate: float | None) -> str:
    """The bare C relay's figure for the same target, to put beside chatserver's."""
    runs = pick(
        results, workload="file", peer=BARE_RELAY, config=f"{m.file_size >> 20}MiB:{receivers}"
    )
    ratio = med(file_ratios(runs, receivers, m.file_size, rate))
    return "" if ratio is None else f" (the {BARE_RELAY}: {ratio:.2f} x)"


def render_table(
    results: list[Record], info: dict[str, str], m: Matrix, argv: list[str], mine: str
) -> str:
    lines: list[str] = []
    add = lines.append
    peers = peer_order(results)
    add(f"# Server benchmark, {info['date']}")
    add("")
    add(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['kernel']}, "
        f"Python {info['python']}."
    )
    add(f"Command: `{shlex.join(['bench/bench_server.py', *argv])}`; repetitions: {m.reps}.")
    versions = sorted({f"{r['peer']}: {r['version']}" for r in results if r.get("version")})
    if versions:
        add("Servers: " + "; ".join(versions) + ".")
    add("")
    add(
        "Each cell: median (min-max) over the repetitions; every run on a fresh server. CPU: "
        "CPU seconds per second of the measured interval (1.00 = one core), for the server, the "
        "load generator (single-threaded) and the whole machine."
    )
    add(
        f"(!) marks a load generator at {SATURATED:.2f} core or more in some run: it was (close "
        "to) the bottleneck there, and the server's figure is a lower bound. On 2 cores the "
        "server and the load generator share the machine, so the two CPU figures add up to at "
        "most 2 (minus the kernel's network work charged elsewhere and other tenants)."
    )
    add("")
    tcp = pick(results, workload="tcp")
    if tcp:
        add("## Loopback TCP, one stream")
        add("")
        add("| bytes | GB/s | reader CPU s | writer CPU s |")
        add("|---|---|---|---|")
        add(
            f"| {tcp[0].get('config', '')} | {cell(values(tcp, 'bytes_per_s', 1e-9), 2)} | "
            f"{cpu_cell(tcp, 'reader_cpu_s')} | {cpu_cell(tcp, 'writer_cpu_s')} |"
        )
        add("")
    fan = pick(results, workload="fanout")
    if fan:
        add(
            f"## Fan-out (W={m.window} in flight per sender, {m.payload}-byte payloads, "
            f"{m.fanout_secs:g} s; latency at "
            + ("every receiver)" if m.lat_every == 1 else f"every {m.lat_every}th receiver)")
        )
        add("")
        add(
            "| N:S | server | deliveries/s | p50 ms | p99 ms | max ms | lost | out of order "
            "| disc. | server CPU | loadgen CPU | machine |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n, s in m.fanout:
            for p in peers:
                rs = pick(fan, config=f"{n}:{s}", peer=p)
                if not rs:
                    continue
                add(
                    f"| {n}:{s} | {p} | {cell(values(rs, 'deliveries_per_s'), 0)} "
                    f"| {cell(values(rs, 'lat_p50_us', 1e-3), 1)} "
                    f"| {cell(values(rs, 'lat_p99_us', 1e-3), 1)} "
                    f"| {cell(values(rs, 'lat_max_us', 1e-3), 1)} | {total(rs, 'lost')} "
                    f"| {total(rs, 'out_of_order')} | {total(rs, 'disconnects')} "
                    f"| {cpu_cell(rs, 'server_cpu_util')} | {cpu_cell(rs, 'loadgen_cpu_util')} "
                    f"| {cpu_cell(rs, 'machine_cores_busy')} |"
                )
        add("")
    con = pick(results, workload="connect")
    if con:
        add(f"## Connections (at most {m.handshakes} handshakes in flight)")
        add("")
        add(
            "| C | server | all logged in (s) | server RSS held (MB) | server peak RSS (MB) "
            "| not logged in | server CPU | loadgen CPU |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for c in m.connect:
            for p in peers:
                rs = pick(con, config=str(c), peer=p)
                if not rs:
                    continue
                done = [r for r in rs if r.get("ok")]
                when = cell(values(done, "time_s"), 2) if done else "incomplete"
                if done and len(done) < len(rs):
                    when += f" ({len(rs) - len(done)} incomplete)"
                missing = sum(int(r.get("C") or 0) - int(r.get("ready") or 0) for r in rs)
                add(
                    f"| {c} | {p} | {when} "
                    f"| {cell(values(rs, 'server_rss_kb', 1 / 1024), 1)} "
                    f"| {cell(values(rs, 'server_hwm_kb', 1 / 1024), 1)} | {missing} "
                    f"| {cpu_cell(rs, 'server_cpu_util')} | {cpu_cell(rs, 'loadgen_cpu_util')} |"
                )
        add("")
    rate = tcp_rate(results)
    fil = pick(results, workload="file")
    if fil:
        add("## File relay (store and forward)")
        add("")
        add(
            f"Each relay (and its paired stream) starts after {m.file_settle:g} s idle; the bare C "
            "relay is `loadgen -w relay`, the same relay with no server and no protocol."
        )
        add("")
        add(
            "| F:R | server | time (s) | aggregate GB/s | vs one TCP stream | upload (s) "
            "| RSS before (MB) | RSS growth (MiB) | verify | server CPU | loadgen CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in m.file_receivers:
            for p in peers:
                rs = pick(fil, config=f"{m.file_size >> 20}MiB:{r}", peer=p)
                if not rs:
                    continue
                ratio = "-"
                vals = file_ratios(rs, r, m.file_size, rate)
                if vals:
                    ratio = cell(vals, 2) + (" x the time" if r == 1 else " x the rate")
                ok = all(x.get("verified_ok") for x in rs)
                add(
                    f"| {m.file_size >> 20} MiB:{r} | {p} | {cell(values(rs, 'time_s'), 2)} "
                    f"| {cell(values(rs, 'aggregate_Bps', 1e-9), 2)} | {ratio} "
                    f"| {cell(values(rs, 'upload_s'), 2)} "
                    f"| {cell(values(rs, 'server_rss_before_kb', 1 / 1024), 1)} "
                    f"| {cell(values(rs, 'server_rss_growth_kb', 1 / 1024), 1)} "
                    f"| {rs[0].get('verify')} {'ok' if ok else 'FAILED'} "
                    f"| {cpu_cell(rs, 'server_cpu_util')} | {cpu_cell(rs, 'loadgen_cpu_util')} |"
                )
        add("")
    slow = pick(results, workload="slow")
    if slow:
        n, s, k = m.slow
        add(f"## Fan-out at full load, {k} clients stop reading once logged in ({m.slow_secs:g} s)")
        add("")
        add(
            "Everyone else must get everything (lost, out of order: at the readers); each stuck "
            "client must be dropped by the server (read at the end until its stream ends). RSS: "
            "the server's before the run and its peak (VmHWM) over its life."
        )
        add("")
        add(
            "| N:S:stuck | server | deliveries/s | p99 ms | lost | out of order | stuck dropped "
            "| SendQ lines in log | RSS before (MB) | peak RSS (MB) | server CPU | loadgen CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in peers:
            rs = pick(slow, peer=p)
            if not rs:
                continue
            add(
                f"| {n}:{s}:{k} | {p} | {cell(values(rs, 'deliveries_per_s'), 0)} "
                f"| {cell(values(rs, 'lat_p99_us', 1e-3), 1)} | {total(rs, 'lost')} "
                f"| {total(rs, 'out_of_order')} | {total(rs, 'stuck_dropped')} of {k * len(rs)} "
                f"| {total(rs, 'server_log_sendq')} "
                f"| {cell(values(rs, 'server_rss_before_kb', 1 / 1024), 1)} "
                f"| {cell(values(rs, 'server_hwm_kb', 1 / 1024), 1)} "
                f"| {cpu_cell(rs, 'server_cpu_util')} | {cpu_cell(rs, 'loadgen_cpu_util')} |"
            )
        add("")
    fc = pick(results, workload="filechat")
    if fc:
        add(
            f"## Chat during a file relay ({m.filechat_chatters} chatters x "
            f"{m.filechat_rate:g} msg/s, open loop; latency p50 / p99 in ms)"
        )
        add("")
        add(
            "| F:R | server | relay (s) | before | during upload | during relay "
            "| beyond own file (relay) | after | lost | server CPU | loadgen CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for p in peers:
            rs = pick(fc, peer=p)
            if not rs:
                continue

            def pp(prefix: str, rs: list[Record] = rs) -> str:
                p50 = med(values(rs, f"{prefix}_p50_us", 1e-3))
                p99 = med(values(rs, f"{prefix}_p99_us", 1e-3))
                if p50 is None or p99 is None:
                    return "-"
                return f"{p50:.1f} / {p99:.1f}"

            add(
                f"| {m.filechat_size >> 20} MiB:{m.filechat_receivers} | {p} "
                f"| {cell(values(rs, 'time_s'), 2)} | {pp('chat_before')} | {pp('chat_upload')} "
                f"| {pp('chat_relay')} | {pp('chat_relay_beyond_own_file')} | {pp('chat_after')} "
                f"| {total(rs, 'chat_lost')} | {cpu_cell(rs, 'server_cpu_util')} "
                f"| {cpu_cell(rs, 'loadgen_cpu_util')} |"
            )
        add("")
    if mine in peers:
        lines += render_targets(results, m, mine)
    failed = [r for r in results if r.get("ok") is False]
    if failed:
        add("## Runs that did not complete cleanly")
        add("")
        for run in failed:
            add(
                f"- {run.get('peer')} {run.get('workload')} {run.get('config')}: "
                f"{run.get('error') or '?'}"
            )
        add("")
    return "\n".join(lines)


def render_targets(results: list[Record], m: Matrix, me: str) -> list[str]:
    """chatserver against the targets of issues 3 and 7 (medians; n/a where not measured)."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    for n, s in m.fanout:
        mine = pick(results, workload="fanout", peer=me, config=f"{n}:{s}")
        peer = pick(results, workload="fanout", peer="inspircd", config=f"{n}:{s}")
        a, b = med(values(mine, "deliveries_per_s")), med(values(peer, "deliveries_per_s"))
        la, lb = med(values(mine, "lat_p99_us")), med(values(peer, "lat_p99_us"))
        lost = sum(int(r.get("lost") or 0) for r in mine)
        ok = None
        if a is not None and b is not None and la is not None and lb is not None:
            ok = a >= b and la <= lb and lost == 0
        got = "-"
        if a is not None:
            p99 = "-" if la is None else f"{la / 1e3:.1f} ms"
            got = f"{fmt_num(a, 0)}/s, p99 {p99}, lost {lost}"
        rows.append((f"fan-out {n}:{s} >= InspIRCd, p99 no worse, nothing lost", got, verdict(ok)))
    big = pick(results, workload="connect", peer=me, config="10000")
    t, rss = med(values(big, "time_s")), med(values(big, "server_rss_kb"))
    ok = None if t is None or rss is None else t <= 5 and rss / 1024 < 150
    got = "-" if t is None or rss is None else f"{t:.2f} s, {rss / 1024:.0f} MB"
    if big and not all(r.get("ok") for r in big):
        ok, got = False, f"incomplete: {big[0].get('error')}"
    rows.append(("10,000 clients logged in within 5 s, server RSS < 150 MB", got, verdict(ok)))
    rate = tcp_rate(results)
    size = f"{m.file_size >> 20} MiB"
    one = pick(results, workload="file", peer=me, config=f"{m.file_size >> 20}MiB:1")
    ten = pick(results, workload="file", peer=me, config=f"{m.file_size >> 20}MiB:10")
    t1 = med(file_ratios(one, 1, m.file_size, rate))
    ok = None if t1 is None else t1 <= 2.2
    got = "-" if t1 is None else f"{t1:.2f} x" + bare_relay(results, m, 1, rate)
    rows.append((f"{size} to 1 receiver within 2.2 x one stream's time", got, verdict(ok)))
    agg = med(file_ratios(ten, 10, m.file_size, rate))
    ok = None if agg is None else agg >= 2
    got = "-" if agg is None else f"{agg:.2f} x" + bare_relay(results, m, 10, rate)
    rows.append((f"{size} to 10 receivers >= 2 x one stream's rate", got, verdict(ok)))
    growth = values(one + ten, "server_rss_growth_kb", 1 / 1024)
    ok = None if not growth else max(growth) < 32
    got = "-" if not growth else f"max {max(growth):.1f} MiB"
    rows.append(("file relay adds < 32 MiB to server RSS", got, verdict(ok)))
    fc = pick(results, workload="filechat", peer=me)
    up = med(values(fc, "chat_upload_p99_us", 1e-3))
    beyond = med(values(fc, "chat_relay_beyond_own_file_p99_us", 1e-3))
    ok = None if up is None else up < 50
    rows.append(
        (
            "chat p99 < 50 ms while a file uploads",
            "-" if up is None else f"{up:.1f} ms",
            verdict(ok),
        )
    )
    ok = None if beyond is None else beyond < 50
    got = "-" if beyond is None else f"{beyond:.1f} ms"
    rows.append(
        (
            "during the relay, chat waits only for the receiver's own file (p99 < 50 ms beyond it)",
            got,
            verdict(ok),
        )
    )
    n, s, k = m.slow
    slow = pick(results, workload="slow", peer=me)
    ok, got = None, "-"
    if slow:
        dropped = sum(int(r.get("stuck_dropped") or 0) for r in slow)
        lost = sum(int(r.get("lost") or 0) + int(r.get("out_of_order") or 0) for r in slow)
        growth = [
            (float(r["server_hwm_kb"]) - float(r["server_rss_before_kb"])) / 1024
            for r in slow
            if r.get("server_hwm_kb") and r.get("server_rss_before_kb")
        ]
        worst = max(growth) if growth else float("nan")
        ok = dropped == k * len(slow) and lost == 0 and worst < k * PER_CLIENT_MIB
        got = f"{dropped} of {k * len(slow)} dropped, lost {lost}, peak RSS +{worst:.1f} MiB"
    rows.append(
        (
            f"fan-out {n}:{s} with {k} clients that stop reading: each dropped, nothing lost for "
            f"the rest, peak RSS growth < {k} x (4 MiB SendQ + 300 KiB)",
            got,
            verdict(ok),
        )
    )
    if all(r[1] == "-" for r in rows):
        return []
    out = [f"## {me} against the targets of issues 3 and 7 (medians)", ""]
    out += ["| target | measured | met |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out.append("")
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs, 1000 clients")
    ap.add_argument("--reps", type=int, help="repetitions of every run (default 3, --quick 1)")
    ap.add_argument(
        "--only", default=",".join(WORKLOADS), help="comma-separated: " + ",".join(WORKLOADS)
    )
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated: " + ",".join(PEERS))
    ap.add_argument(
        "--server-cmd",
        help="start chatserver with this shell command instead; {port} is replaced by the port "
        "(the server must listen on 127.0.0.1:{port})",
    )
    ap.add_argument("--label", default="chatserver", help="name of the chatwire server in tables")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=CMD",
        help="also measure another chatwire server, started with shell command CMD ({port} as "
        "for --server-cmd), in the same run, alternating with the others; repeatable",
    )
    ap.add_argument("--fanout-secs", type=float, help="sending time of each fan-out run")
    ap.add_argument(
        "--lat-every",
        type=int,
        help="fan-out latency at every k-th receiver and the probe (default 10; 1 = all); "
        "order and count are checked at every receiver regardless",
    )
    ap.add_argument("--connect-sizes", help="comma-separated client counts, e.g. 1000,5000")
    ap.add_argument("--file-size", help="file size for file and filechat, e.g. 256M, 1G")
    ap.add_argument(
        "--file-settle",
        type=float,
        help="idle seconds before each file relay (default 5: every upload then meets memory "
        "this VM has handed back to its host; 0 = none)",
    )
    ap.add_argument("--out", type=Path, help="results directory (default bench-results/<time>)")
    return ap.parse_args(argv)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    m = Matrix.quick() if args.quick else Matrix()
    if args.reps:
        m.reps = args.reps
    if args.fanout_secs:
        m.fanout_secs = args.fanout_secs
    if args.lat_every:
        m.lat_every = args.lat_every
    if args.connect_sizes:
        m.connect = tuple(int(x) for x in args.connect_sizes.split(","))
    if args.file_size:
        m.file_size = m.filechat_size = parse_size(args.file_size)
    if args.file_settle is not None:
        m.file_settle = args.file_settle
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        sys.exit(f"unknown workloads: {', '.join(sorted(unknown))}")
    peers: list[Peer] = []
    for name in (p.strip() for p in args.peers.split(",") if p.strip()):
        if name == "chatserver":
            most = max([*m.connect, *(n for n, _s in m.fanout)]) + 100
            peers.append(chatserver_peer(args.server_cmd, args.label, most))
        elif name in ("ngircd", "inspircd"):
            exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
            if not exe:
                print(f"skipping {name}: not installed (apt-get install {name})", flush=True)
                continue
            peers.append(ngircd_peer(exe) if name == "ngircd" else inspircd_peer(exe))
        else:
            sys.exit(f"unknown peer {name}; known: {', '.join(PEERS)}")
    for spec in args.compare:
        label, sep, cmd = spec.partition("=")
        if not sep or not label or not cmd:
            sys.exit(f"--compare wants LABEL=CMD, got {spec!r}")
        if label in {p.name for p in peers}:
            sys.exit(f"--compare: the label {label!r} is taken")
        peers.append(chatserver_peer(cmd, label, 0))
    if not peers and only - {"tcp"}:
        sys.exit("no server to measure")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # 10,000 clients need 10,000 descriptors here and in the server
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(m.connect) + 100 if "connect" in only else 2000
    if hard < need:
        print(f"warning: open-file limit {hard} is below {need}; large runs will fail", flush=True)

    loadgen = build_loadgen(OUT_ROOT / "bin")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = args.out or OUT_ROOT / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    bench = Bench(loadgen, outdir, m, peers, only)
    bench.say(
        f"# {info['date']}: {info['cpu']}, {info['cores']} cores, {info['ram']}, {info['kernel']}"
    )
    for p in peers:
        bench.say(f"# {p.name}: {p.version or '?'}")
    meta = {"workload": "meta", "argv": argv, "machine": info, "matrix": m.__dict__}
    meta["peers"] = {p.name: p.version for p in peers}
    bench.keep(meta)
    versions = {p.name: p.version for p in peers}
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.say("!! interrupted: the table covers the runs so far")
    for r in bench.results:
        if r.get("peer") in versions:
            r["version"] = versions[r["peer"]]
    runs = [r for r in bench.results if r.get("workload") != "meta"]
    table = render_table(runs, info, m, argv, args.label)
    (outdir / "table.md").write_text(table + "\n")
    print()
    print(table)
    print(f"results: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
