"""``chatserver`` / ``python -m chatserver``: run the reference server.

With no arguments it listens on every interface, port 1234 (tcp://:1234), and prints where.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys

from chatwire.cli import parse_size
from chatwire.transport import EndpointError

from . import __version__
from .config import ServerConfig
from .files import SpoolError
from .server import Server


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="chatserver",
        description="The chatwire reference chat server (spec/protocol.md).",
        epilog=(
            "Listen URLs: tcp://HOST:PORT, unix:///PATH, "
            "tls://HOST:PORT?cert=FILE&key=FILE[&ca=CLIENT-CA] (with ca=, clients must present "
            "a certificate issued by that CA). Sizes accept K, M, G suffixes."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-l",
        "--listen",
        action="append",
        metavar="URL",
        help=f"where to listen; repeat for several (default: {defaults.listen[0]})",
    )
    parser.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="where files wait to be relayed (default: the system temp dir)",
    )
    parser.add_argument(
        "--max-file-size",
        type=parse_size,
        default=defaults.max_file_size,
        metavar="SIZE",
        help="largest file accepted (default: 4G)",
    )
    parser.add_argument(
        "--spool-limit",
        type=parse_size,
        default=defaults.spool_limit,
        metavar="SIZE",
        help="space for files being relayed (default: 16G)",
    )
    parser.add_argument(
        "--spool-quota-per-ip",
        type=parse_size,
        default=defaults.spool_quota_per_ip,
        metavar="SIZE",
        help="space the files being uploaded or relayed from one address may hold "
        "(default: 0, no quota beyond --spool-limit)",
    )
    parser.add_argument(
        "--upload-min-rate",
        type=parse_size,
        default=defaults.upload_min_rate,
        metavar="SIZE",
        help="bytes per second an upload must average over each --upload-rate-window, or it is "
        "closed and its spool space freed; 0 turns the check off (default: 16K)",
    )
    parser.add_argument(
        "--upload-rate-window",
        type=float,
        default=defaults.upload_rate_window,
        metavar="SECONDS",
        help="the window over which --upload-min-rate is averaged (default: 30)",
    )
    parser.add_argument(
        "--sendq",
        type=parse_size,
        default=defaults.sendq,
        metavar="SIZE",
        help="unsent bytes (replies, relays, notices) per client before it is disconnected "
        "(default: 4M)",
    )
    parser.add_argument(
        "--login-timeout",
        type=float,
        default=defaults.login_timeout,
        metavar="SECONDS",
        help="time to log in (default: 10)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=defaults.stall_timeout,
        metavar="SECONDS",
        help="time without a byte inside a frame (default: 60)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=defaults.handshake_timeout,
        metavar="SECONDS",
        help="time to complete a TLS handshake (default: 10)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=defaults.drain_timeout,
        metavar="SECONDS",
        help="time to send queued frames at shutdown; clients still owed bytes then are cut "
        "off (default: 5)",
    )
    parser.add_argument(
        "--write-timeout",
        type=float,
        default=defaults.write_timeout,
        metavar="SECONDS",
        help="time a client may leave everything unread before it is dropped (default: 60)",
    )
    parser.add_argument(
        "--max-queued-files",
        type=int,
        default=defaults.max_queued_files,
        metavar="N",
        help="relayed files waiting for one client before it is dropped (default: 64)",
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=defaults.max_clients,
        metavar="N",
        help="connections allowed in all (default: 0, what the open-files limit allows)",
    )
    parser.add_argument(
        "--max-per-ip",
        type=int,
        default=defaults.max_per_ip,
        metavar="N",
        help="connections allowed from one address (default: 0, no limit)",
    )
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=defaults.flood_rate,
        metavar="PER_SECOND",
        help="frames (messages, files, list and nick requests) per second one client may send "
        "on average; beyond it the server reads that client more slowly; 0 turns flood control "
        "off (default: 50)",
    )
    parser.add_argument(
        "--flood-burst",
        type=int,
        default=defaults.flood_burst,
        metavar="N",
        help="frames one client may send in a burst (default: 200)",
    )
    parser.add_argument(
        "--notices",
        action="store_true",
        help="tell everyone of joins, leaves and nick changes (spec 3.1.8)",
    )
    parser.add_argument(
        "--welcome", default="", metavar="TEXT", help="a notice sent to each client once logged in"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default: info",
    )
    return parser


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit (each client is one descriptor,
    and the usual soft limit of 1024 is far below the thousands a server holds). Returns the
    limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    files = raise_file_limit()
    logging.getLogger("chatserver").info("open files limit: %d", files)
    try:
        config = ServerConfig(
            listen=args.listen or ServerConfig().listen,
            spool_dir=args.spool_dir,
            max_file_size=args.max_file_size,
            spool_limit=args.spool_limit,
            spool_quota_per_ip=args.spool_quota_per_ip,
            upload_min_rate=args.upload_min_rate,
            upload_rate_window=args.upload_rate_window,
            sendq=args.sendq,
            login_timeout=args.login_timeout,
            stall_timeout=args.stall_timeout,
            handshake_timeout=args.handshake_timeout,
            drain_timeout=args.drain_timeout,
            write_timeout=args.write_timeout,
            max_queued_files=args.max_queued_files,
            flood_rate=args.flood_rate,
            flood_burst=args.flood_burst,
            max_per_ip=args.max_per_ip,
            max_clients=args.max_clients,
            notices=args.notices,
            welcome=args.welcome,
        )
        server = Server(config)
    except (ValueError, EndpointError, SpoolError, OSError) as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("chatserver").info("accepting up to %d clients", server.max_clients)
    for url in server.urls:
        print(f"chatserver {__version__} listening on {url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
