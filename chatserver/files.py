"""Spooling of files for store-and-forward relay (spec 3.1.4, 5.4).

A file's data is written to a spool file while it arrives and relayed only once complete. Spool
files are anonymous: created already unlinked (``tempfile.TemporaryFile``, ``O_TMPFILE`` on
Linux) in the spool directory, so no name is ever visible and nothing is left behind however the
server ends, even on SIGKILL. A spool is shared by reference by every recipient's queue and
closed (its space freed) when the last reference is released.

`SpoolManager` accounts the space of every open spool against a limit, reserving a file's whole
size when its ``<file_size>`` header arrives (spec 7.4), so the limit can never be overrun; an
optional quota bounds what the uploads of one owner (a client address) may hold at once, so one
address cannot take the whole spool. No sockets here.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO

__all__ = ["Spool", "SpoolError", "SpoolManager"]


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
        """Drop one reference; the last one closes the file and frees its space."""
        self.refs -= 1
        if self.refs == 0:
            self._file.close()
            self._manager._freed(self)


class SpoolManager:
    """Creates spools in ``directory`` and keeps their total size within ``limit`` bytes, and
    the size of those of one owner within ``quota`` bytes (0: no quota; owner ``""`` has none,
    the server's local Unix-socket clients)."""

    def __init__(self, directory: str | None, limit: int, quota: int = 0) -> None:
        self.directory = directory or tempfile.gettempdir()
        self.limit = limit
        self.quota = quota
        self.used = 0  # bytes reserved by open spools
        self.open_spools = 0
        self._owners: dict[str, int] = {}  # owner -> bytes reserved by its open spools
        if not os.path.isdir(self.directory):
            raise SpoolError(f"spool directory {self.directory!r} does not exist")

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
        self.used += size
        self.open_spools += 1
        self._owners[owner] = held + size
        return Spool(self, file, size, owner)

    def held_by(self, owner: str) -> int:
        """Bytes reserved by the open spools of ``owner``."""
        return self._owners.get(owner, 0)

    def _freed(self, spool: Spool) -> None:
        self.used -= spool.size
        self.open_spools -= 1
        left = self._owners.get(spool.owner, 0) - spool.size
        if left > 0:
            self._owners[spool.owner] = left
        else:
            self._owners.pop(spool.owner, None)
