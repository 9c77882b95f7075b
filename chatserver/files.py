"""Spooling of files for store-and-forward relay (spec 3.1.4, 5.4).

A file's data is written to a spool file while it arrives and relayed only once complete. Spool
files are anonymous: created already unlinked (``tempfile.TemporaryFile``, ``O_TMPFILE`` on
Linux) in the spool directory, so no name is ever visible and nothing is left behind however the
server ends, even on SIGKILL. A spool is shared by reference by every recipient's queue and
closed (its space freed) when the last reference is released.

Freeing a large file is not free: closing a 1 GiB spool makes the kernel drop 262,144 pages of
page cache in one system call (measured here: 70-100 ms), during which a single-threaded server
serves no one. So a spool larger than `FREE_STEP` is shrunk by `FREE_STEP` bytes per step, one
step per reactor pass (``schedule``, the reactor's ``call_soon``), and closed when empty; its
space stays reserved until then, so the limit holds exactly.

`SpoolManager` accounts the space of every open spool against a limit, reserving a file's whole
size when its ``<file_size>`` header arrives (spec 7.4), so the limit can never be overrun; an
optional quota bounds what the uploads of one owner (a client address) may hold at once, so one
address cannot take the whole spool. No sockets here.

Where the spool directory's file system reserves blocks without writing them (ext4, XFS,
Btrfs), the disk space is reserved too, with ``fallocate`` when the header arrives: a full disk
then refuses the file when its size arrives, with a notice saying why as for a full spool,
instead of ending the upload half-way, and the upload's writes skip the file system's per-block
reservation. Measured on loopback with 1 GiB files (bench/bench_server.py --compare, seven
alternating runs): uploads 0.43 s against 0.64, one receiver 0.76 s against 0.96, ten 2.57 s
against 2.84 (docs/benchmarks.md, 2026-12-02). A reservation costs about 2 ms per GiB on ext4.
Elsewhere nothing is reserved: on tmpfs ``fallocate`` allocates and zeroes every page at once,
and glibc emulates it by writing where a file system lacks it, both of which would stall the
reactor.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO

__all__ = ["FREE_STEP", "Spool", "SpoolError", "SpoolManager", "filesystem_type"]

FREE_STEP = 32 << 20  # bytes of a released spool freed per reactor pass (a few ms of kernel work)

# File systems whose fallocate(2) reserves blocks without writing or touching pages (see above).
RESERVING_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs"})


def filesystem_type(path: str, mountinfo: str | None = None) -> str:
    """The type of the file system holding ``path`` ("ext4", "tmpfs", ...), read from
    ``/proc/self/mountinfo`` (or the text ``mountinfo``); "" where that cannot be told."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                mountinfo = f.read()
        except OSError:  # not Linux, or no /proc
            return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mountinfo.splitlines():
        # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": the mount point is
        # the fifth field (spaces escaped as \040), the type the first after " - ".
        head, dash, tail = line.partition(" - ")
        fields = head.split()
        if not dash or len(fields) < 5 or not tail.split():
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):  # the deepest; of stacked mounts, the last
            best, kind = mount, tail.split()[0]
    return kind


class SpoolError(Exception):
    """A file cannot be spooled (no space under the limit, or the disk refused)."""


class Spool:
    """One spooled file: written once, then read by any number of relays."""

    __slots__ = ("_file", "_manager", "fd", "owner", "refs", "size", "written")

    def __init__(self, manager: SpoolManager, file: IO[bytes], size: int, owner: str = "") -> None:
        self._manager = manager
        self._file = file
        self.fd = file.fileno()
        self.size = size
        self.owner = owner
        self.written = 0
        self.refs = 1  # the uploader's

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (the next bytes of the upload)."""
        view = memoryview(data)
        while view:
            count = os.write(self.fd, view)
            view = view[count:]
            self.written += count

    def wrote(self, count: int) -> None:
        """Note ``count`` bytes written to ``fd`` by someone else (a spliced upload)."""
        self.written += count

    @property
    def complete(self) -> bool:
        return self.written == self.size

    def acquire(self) -> None:
        """Take one more reference (a recipient's queue)."""
        self.refs += 1

    def release(self) -> None:
        """Drop one reference; the last one frees the file's space (at once, or in steps for a
        large file: see the module docstring)."""
        self.refs -= 1
        if self.refs == 0:
            self._manager._release(self)

    def _close(self) -> None:
        self._file.close()


class SpoolManager:
    """Creates spools in ``directory`` and keeps their total size within ``limit`` bytes, and
    the size of those of one owner within ``quota`` bytes (0: no quota; owner ``""`` has none,
    the server's local Unix-socket clients)."""

    def __init__(
        self,
        directory: str | None,
        limit: int,
        quota: int = 0,
        *,
        schedule: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.directory = directory or tempfile.gettempdir()
        self._schedule = schedule  # None: free every spool at once (no reactor to step in)
        self._dying: deque[Spool] = deque()  # released, being shrunk a step per pass
        self.limit = limit
        self.quota = quota
        self.used = 0  # bytes reserved by open spools
        self.open_spools = 0
        self._owners: dict[str, int] = {}  # owner -> bytes reserved by its open spools
        if not os.path.isdir(self.directory):
            raise SpoolError(f"spool directory {self.directory!r} does not exist")
        #: Whether each spool's disk space is reserved when it is opened (see the module's doc).
        self.reserves_space = filesystem_type(self.directory) in RESERVING_FILESYSTEMS

    def open(self, size: int, owner: str = "") -> Spool:
        """A new spool for a file of ``size`` bytes uploaded by ``owner``, its space reserved.

        Raises:
            SpoolError: the file does not fit under the limit or the owner's quota now, or
                cannot be created.
        """
        if self.used + size > self.limit:
            raise SpoolError(
                f"spool full: {size} bytes asked, {self.limit - self.used} of {self.limit} free"
            )
        held = self._owners.get(owner, 0)
        if owner and self.quota and held + size > self.quota:
            raise SpoolError(
                f"spool quota of {owner} reached: {size} bytes asked, "
                f"{self.quota - held} of {self.quota} free"
            )
        try:
            # Closed by the last Spool.release(), not by a with-block: the file outlives this call.
            file = tempfile.TemporaryFile(dir=self.directory, prefix="chatwire-spool-")  # noqa: SIM115
        except OSError as exc:
            raise SpoolError(f"cannot create a spool file in {self.directory!r}: {exc}") from exc
        if self.reserves_space and size:
            try:
                os.posix_fallocate(file.fileno(), 0, size)
            except OSError as exc:  # a full disk: refused now, not half-way through the upload
                file.close()
                raise SpoolError(
                    f"no room for {size} bytes in {self.directory!r}: {exc.strerror or exc}"
                ) from exc
        self.used += size
        self.open_spools += 1
        self._owners[owner] = held + size
        return Spool(self, file, size, owner)

    def held_by(self, owner: str) -> int:
        """Bytes reserved by the open spools of ``owner``."""
        return self._owners.get(owner, 0)

    def _release(self, spool: Spool) -> None:
        if self._schedule is None or spool.written <= FREE_STEP:
            self._freed(spool)
            return
        self._dying.append(spool)
        if len(self._dying) == 1:
            self._schedule(self._free_step)

    def _free_step(self) -> None:
        # One step of kernel work per pass; the reactor serves everyone in between.
        spool = self._dying[0]
        left = spool.written - FREE_STEP
        if left > 0:
            try:
                os.ftruncate(spool.fd, left)
                spool.written = left
            except OSError:
                left = 0  # close it whole instead
        if left <= 0:
            self._dying.popleft()
            self._freed(spool)
        if self._dying:
            assert self._schedule is not None
            self._schedule(self._free_step)

    def close(self) -> None:
        """Free at once whatever is still being freed in steps (the server is stopping)."""
        while self._dying:
            self._freed(self._dying.popleft())

    def _freed(self, spool: Spool) -> None:
        spool._close()
        self.used -= spool.size
        self.open_spools -= 1
        left = self._owners.get(spool.owner, 0) - spool.size
        if left > 0:
            self._owners[spool.owner] = left
        else:
            self._owners.pop(spool.owner, None)
