"""The server's settings, with the defaults an operator gets when starting ``chatserver`` bare."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatwire import FILE_MAX
from chatwire.cli import parse_size
from chatwire.transport import DEFAULT_PORT

__all__ = ["ServerConfig", "parse_size"]


@dataclass(kw_only=True)
class ServerConfig:
    """Everything the server can be told. Times in seconds, sizes in bytes."""

    #: Endpoint URLs to listen on (chatwire.transport): all interfaces, port 1234.
    listen: list[str] = field(default_factory=lambda: [f"tcp://:{DEFAULT_PORT}"])
    #: Where spool files go (they are created already unlinked); default: the system temp dir.
    spool_dir: str | None = None
    #: Largest file accepted (spec 3.1.4, 7.4).
    max_file_size: int = 4 << 30
    #: Space for all files not yet fully relayed.
    spool_limit: int = 16 << 30
    #: Space the files uploaded from one address may hold at once (0: no quota beyond the
    #: spool limit). Unix-socket clients are local and have none.
    spool_quota_per_ip: int = 0
    #: Uploads slower than this (bytes per second, averaged over each window of
    #: upload_rate_window seconds from the start of the file) are closed: a trickled upload
    #: would hold its spool reservation for as long as it likes. 0 turns the check off.
    upload_min_rate: int = 16 << 10
    upload_rate_window: float = 30.0
    #: Unsent bytes per client (replies, relays, notices; files count by their headers) before
    #: "SendQ exceeded" (spec 7.3), checked on every write.
    sendq: int = 4 << 20
    #: Relayed files waiting for one client before it is disconnected like a full SendQ: files
    #: are queued by reference, and a client that never reads must not hold the spool hostage.
    max_queued_files: int = 64
    #: Seconds a client may leave frames unread (nothing sent to it at all) before it is
    #: disconnected (spec 7.3); this is what frees the spool held for a reader that stopped.
    write_timeout: float = 60.0
    #: Seconds to complete the login (spec 7.2).
    login_timeout: float = 10.0
    #: Seconds without a byte in the middle of a frame (spec 7.2).
    stall_timeout: float = 60.0
    #: Seconds for a TLS handshake.
    handshake_timeout: float = 10.0
    #: Seconds to keep reading after NE before closing (spec 3.1.1).
    linger: float = 1.0
    #: Seconds a connection closed for cause (a protocol error, say) may take to send what it
    #: has queued.
    flush_timeout: float = 5.0
    #: Seconds to drain queues at shutdown (spec 7.5); clients still owed bytes then are cut off.
    drain_timeout: float = 5.0
    #: Seconds a client that has been sent everything at shutdown is given to close its end, so
    #: it sees a clean end of stream (bounded by the drain deadline).
    drain_linger: float = 1.0
    #: Flood control: frames per second one client may send on average (every frame that costs
    #: the server work: messages, files, list and nick requests), and how many in a burst.
    #: Beyond that the server stops reading that client for a while (TCP pushes back on it
    #: alone; nothing is lost). 0 turns it off.
    flood_rate: float = 50.0
    flood_burst: int = 200
    #: Send join/leave/rename notices (spec 3.1.8).
    notices: bool = False
    #: A notice sent to each client after ACC, or "" for none.
    welcome: str = ""
    #: Most simultaneous connections from one address (0: no limit).
    max_per_ip: int = 0
    #: Most simultaneous connections in all (0: as many as the open-files limit allows, two
    #: descriptors each: the socket, and a spool file while it uploads).
    max_clients: int = 0

    def __post_init__(self) -> None:
        if not self.listen:
            raise ValueError("at least one listen URL is needed")
        if self.flood_rate and self.flood_burst < 1:
            raise ValueError("flood_burst must be at least 1")
        if not 0 <= self.max_file_size <= FILE_MAX:
            raise ValueError(f"max_file_size must be 0..{FILE_MAX}")
        for name in (
            "spool_limit",
            "sendq",
            "max_per_ip",
            "max_clients",
            "max_queued_files",
            "flood_rate",
            "spool_quota_per_ip",
            "upload_min_rate",
            "drain_linger",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        for name in (
            "login_timeout",
            "stall_timeout",
            "handshake_timeout",
            "flush_timeout",
            "drain_timeout",
            "upload_rate_window",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
