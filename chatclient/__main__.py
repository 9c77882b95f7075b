"""``chatclient [URL]`` / ``python -m chatclient``: the reference chat client, interactive or
scripted.

Interactive (standard input and output are terminals, and no ``--send``, ``--send-file``,
``--json`` or ``--listen``): the terminal UI of `chatclient.ui`.

Scripted (anything else): needs ``--nick``. It sends each ``--send TEXT`` and ``--send-file
PATH`` in the order given, then quits; with neither, it reads standard input line by line, each
line meaning what it means at the prompt (text, or a command such as ``/list`` or ``/sendFile
PATH``), and quits at its end. ``--listen`` keeps receiving instead of quitting, until the server
closes or a signal arrives. Everything received is printed on standard output: plain lines (no
colours, every string escaped as spec 8.5 asks), or with ``--json`` one JSON object per line.
Before quitting it waits for the answers to its requests and for its files to be sent.

Received files are saved in ``--downloads`` (default ``~/chatwire-downloads``, created at
start as in the paper). Exit codes: see `chatclient.commands.ExitCode` and ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from chatwire import LocalProtocolError
from chatwire.cli import parse_size
from chatwire.transport import Endpoint, EndpointError, parse_endpoint

from . import __version__
from .client import (
    DEFAULT_KEEP_FREE,
    DEFAULT_MAX_FILE_SIZE,
    ChatError,
    Client,
    ConnectError,
    Disconnected,
    FileProgress,
    LoginRefusedError,
    connect,
)
from .commands import (
    HELP,
    ChangeNick,
    Clear,
    ExitCode,
    Help,
    ListUsers,
    Problem,
    Quit,
    Say,
    SendFile,
    parse,
)
from .display import escape, event_fragments, event_json, plain, timestamp
from .files import default_downloads, ensure_folder

__all__ = ["build_parser", "main"]

DEFAULT_URL = "tcp://localhost:1234"

EPILOG = """\
URL: tcp://HOST:PORT, unix:///PATH or tls://HOST:PORT (default tcp://localhost:1234).
TLS options may also go in the URL: tls://HOST:PORT?ca=FILE&cert=FILE&key=FILE.

Scripted mode (when not both stdin and stdout are terminals, or with --send, --send-file,
--json or --listen): lines read from stdin are sent as messages or run as commands (/list,
/nick NEW, /sendFile PATH, /quit; // starts a line sent as text starting with /).

exit codes:
  0    the user quit, or the script ran to its end
  1    could not connect; the server closed the connection; a network or protocol error
  2    bad arguments
  3    the server refused the nick (scripted mode; the terminal UI asks for another)
  4    a file to send could not be read, or its name cannot be sent
  130  interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatclient",
        description="The chatwire reference chat client (spec/protocol.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help="the server (see below)")
    parser.add_argument("-n", "--nick", help="the nick to log in with (asked if not given)")
    parser.add_argument(
        "-d",
        "--downloads",
        metavar="DIR",
        help="where received files are saved (default: ~/chatwire-downloads, created at start)",
    )
    parser.add_argument(
        "--max-file-size",
        type=parse_size,
        default=DEFAULT_MAX_FILE_SIZE,
        metavar="SIZE",
        help="received files larger than this are discarded, not saved (default: 4G)",
    )
    parser.add_argument(
        "--keep-free",
        type=parse_size,
        default=DEFAULT_KEEP_FREE,
        metavar="SIZE",
        help="discard a received file that would leave less free disk space (default: 1G)",
    )
    tls = parser.add_argument_group("TLS (tls:// URLs)")
    tls.add_argument("--ca", metavar="FILE", help="trust this CA instead of the system's")
    tls.add_argument("--cert", metavar="FILE", help="our client certificate (chain)")
    tls.add_argument("--key", metavar="FILE", help="the key of --cert (default: in --cert)")
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the server (tests only)"
    )
    script = parser.add_argument_group("scripted mode")
    script.add_argument(
        "--send",
        dest="actions",
        action="append",
        type=lambda text: ("text", text),
        metavar="TEXT",
        help="send TEXT (repeatable; in order with --send-file), then quit",
    )
    script.add_argument(
        "--send-file",
        dest="actions",
        action="append",
        type=lambda path: ("file", path),
        metavar="PATH",
        help="send the file at PATH (repeatable), then quit",
    )
    script.add_argument(
        "--listen", action="store_true", help="do not read stdin or quit: print what arrives"
    )
    script.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--no-color", action="store_true", help="no colours (NO_COLOR works too)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time to connect and to get answers (default: 10)",
    )
    return parser


def _endpoint(args: argparse.Namespace) -> Endpoint:
    endpoint = parse_endpoint(args.url)
    options = {
        key: value
        for key, value in (("ca", args.ca), ("cert", args.cert), ("key", args.key))
        if value
    }
    if args.insecure:
        options["verify"] = False
    if options and endpoint.scheme != "tls":
        raise EndpointError(f"{args.url}: --ca, --cert, --key and --insecure need a tls:// URL")
    if "cert" in options and "key" not in options and endpoint.key is None:
        options["key"] = options["cert"]
    return dataclasses.replace(endpoint, **options)


def _say(message: str) -> None:
    print(f"chatclient: {escape(message, multiline=True)}", file=sys.stderr, flush=True)


class _Terminated(Exception):  # noqa: N818 - a signal turned into control flow, not an error
    """SIGTERM in scripted mode: quit cleanly."""


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        endpoint = _endpoint(args)
    except EndpointError as exc:
        parser.error(str(exc))
    try:
        downloads = ensure_folder(args.downloads or default_downloads())
    except OSError as exc:
        _say(f"cannot create the download folder: {exc}")
        return ExitCode.ERROR
    interactive = not (args.actions or args.json or args.listen) and (
        sys.stdin.isatty() and sys.stdout.isatty()
    )
    if interactive:
        from .ui import run  # noqa: PLC0415 - prompt_toolkit is loaded only when needed

        return run(
            endpoint,
            nick=args.nick,
            downloads=downloads,
            color=not args.no_color,
            timeout=args.timeout,
            max_file_size=args.max_file_size,
            keep_free=args.keep_free,
        )
    if not args.nick:
        _say("--nick is needed when not running in a terminal")
        return ExitCode.USAGE
    return _scripted(args, endpoint, downloads)


def _scripted(args: argparse.Namespace, endpoint: Endpoint, downloads: Path) -> int:
    try:
        client = connect(
            endpoint,
            args.nick,
            downloads=downloads,
            timeout=args.timeout,
            max_file_size=args.max_file_size,
            keep_free=args.keep_free,
        )
    except (LoginRefusedError, LocalProtocolError) as exc:
        _say(str(exc))
        return ExitCode.NICK_REFUSED
    except ConnectError as exc:
        _say(str(exc))
        return ExitCode.ERROR
    final: list[Disconnected] = []
    scripting = threading.Event()  # set while the main thread may block reading stdin

    def connection_over() -> None:
        # The main thread may be blocked reading stdin, which the end of the connection does
        # not interrupt: wake it with the same signal as an outside SIGTERM would.
        if scripting.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)

    printer = threading.Thread(
        target=_print_events,
        args=(client, sys.stdout, args.json, final, connection_over),
        daemon=True,
    )

    def terminate(signum: int, frame: FrameType | None) -> None:
        scripting.clear()
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    status: int = ExitCode.OK
    scripting.set()
    printer.start()
    try:
        status = _script(args, client)
        scripting.clear()
        if args.listen:
            client.wait_closed()
        else:
            client.quit()
    except KeyboardInterrupt:
        status = ExitCode.INTERRUPTED
    except _Terminated:
        status = ExitCode.OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        client.quit(timeout=args.timeout)
        printer.join(args.timeout)
    if status != ExitCode.OK:
        return status
    return ExitCode.OK if final and final[0].expected else ExitCode.ERROR


def _script(args: argparse.Namespace, client: Client) -> int:
    """Send what the arguments or stdin say; the exit code so far."""
    status: int = ExitCode.OK
    replies: list[Future[Any]] = []  # answers to wait for before quitting
    uploads: list[Future[Any]] = []
    try:
        if args.actions:
            for kind, value in args.actions:
                if kind == "text":
                    client.send_text(value)
                elif not _send_file(client, value, uploads):
                    return ExitCode.FILE_ERROR
        elif not args.listen:
            for raw in sys.stdin:
                command = parse(raw.rstrip("\r\n"))
                if isinstance(command, Quit):
                    break
                if not _run_line(client, command, replies, uploads):
                    status = ExitCode.FILE_ERROR
    except ChatError:
        return status  # the connection is over; the printer shows why
    wait_futures(replies, timeout=args.timeout)
    wait_futures(uploads)  # uploads end with their last byte, or with the connection
    return status


def _run_line(
    client: Client,
    command: object,
    replies: list[Future[Any]],
    uploads: list[Future[Any]],
) -> bool:
    """Do one command read from stdin; False if a file could not be sent."""
    if isinstance(command, Say):
        client.send_text(command.text)
    elif isinstance(command, ListUsers):
        replies.append(client.list_users())
    elif isinstance(command, ChangeNick):
        replies.append(client.change_nick(command.nick))
    elif isinstance(command, SendFile):
        return _send_file(client, os.path.expanduser(command.path), uploads)
    elif isinstance(command, Help):
        print(HELP, file=sys.stderr)
    elif isinstance(command, Problem):
        _say(command.message)
    elif isinstance(command, Clear) or command is None:
        pass
    return True


def _send_file(client: Client, path: str, uploads: list[Future[Any]]) -> bool:
    try:
        uploads.append(client.send_file(path))
    except OSError as exc:
        _say(f"cannot send {path}: {exc.strerror or exc}")
        return False
    except LocalProtocolError as exc:
        _say(f"cannot send {path}: {exc}")
        return False
    return True


def _print_events(
    client: Client,
    out: TextIO,
    as_json: bool,
    final: list[Disconnected],
    on_end: Callable[[], None],
) -> None:
    """Print every event until the end (on its own thread); the last one goes in ``final``,
    and an end the script did not ask for calls ``on_end``."""
    for event in client.events():
        if isinstance(event, Disconnected):
            final.append(event)
            if not event.expected:
                on_end()
        if as_json:
            line = event_json(event)
        elif isinstance(event, FileProgress):
            continue  # a line per progress step would drown the output
        else:
            line = f"{timestamp()} {plain(event_fragments(event))}"
        # If nobody reads our output any more, keep consuming events all the same.
        with contextlib.suppress(BrokenPipeError, ValueError):
            print(line, file=out, flush=True)


if __name__ == "__main__":
    sys.exit(main())
