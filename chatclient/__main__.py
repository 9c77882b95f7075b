"""``chatclient [URL]`` / ``python -m chatclient``: the reference chat client, interactive or
scripted.

Interactive (standard input and output are terminals, and no ``--send``, ``--send-file``,
``--json`` or ``--listen``): the terminal UI of `chatclient.ui`.

Scripted (anything else): needs ``--nick``, except when standard input is a terminal
(``chatclient | tee log``): then it asks for the nick there, and again after NE, as the terminal
UI does. It sends each ``--send TEXT`` and ``--send-file PATH`` in the order given, then quits;
with neither, it reads standard input line by line, each line meaning what it means at the
prompt (text, or a command such as ``/list`` or ``/sendFile PATH``), and quits at its end. A
line that is not valid UTF-8 is not sent (said on stderr; the next lines go on; exit code 5).
``--listen`` keeps receiving instead of quitting, until the server closes or a signal arrives.
Everything received is printed on standard output: plain lines (no colours, every string
escaped as spec 8.5 asks), or with ``--json`` one JSON object per line; with ``--json`` the
problems said on stderr (a file that cannot be sent, an unknown command, a refused nick) are
also printed there as ``{"event": "error", "message": ...}``. Before quitting it waits for the
answers to its requests and for its files to be sent (as long as they make progress; see
`chatclient.client.Client.quit`). SIGTERM and SIGHUP quit at once (within
`SIGNAL_QUIT_TIMEOUT`), removing a file being received; exit code 0.

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

from chatwire import LocalProtocolError, nick_error
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
from .display import escape, event_fragments, event_json, plain, problem_json, timestamp
from .files import default_downloads, ensure_folder, remove_stale_parts

__all__ = ["build_parser", "main"]

DEFAULT_URL = "tcp://localhost:1234"

EPILOG = """\
URL: tcp://HOST:PORT, unix:///PATH or tls://HOST:PORT (default tcp://localhost:1234).
TLS options may also go in the URL: tls://HOST:PORT?ca=FILE&cert=FILE&key=FILE.

Terminal client: Ctrl-C clears the line being typed; on an empty line it quits like /quit
(and Ctrl-D). Quitting waits for files being sent; Ctrl-C again aborts them.

Scripted mode (when not both stdin and stdout are terminals, or with --send, --send-file,
--json or --listen): lines read from stdin are sent as messages or run as commands (/list,
/nick NEW, /sendFile PATH, /quit; // starts a line sent as text starting with /). --nick is
needed unless stdin is a terminal (then the nick is asked there). With --json, problems are
also printed on stdout as {"event": "error", "message": ...} lines.

SIGTERM and SIGHUP quit at once, removing a partly received file (exit code 0).

exit codes:
  0    the user quit, or the script ran to its end
  1    could not connect; the server closed the connection; a network or protocol error;
       a file was cut short because the server stopped reading
  2    bad arguments
  3    the server refused the nick (scripted mode with --nick; otherwise it asks again)
  4    a file to send could not be read, or its name cannot be sent
  5    a line or --send text was not valid UTF-8 and was not sent (the rest was)
  130  interrupted: Ctrl-C in scripted mode or at the nick prompt, or a second Ctrl-C
       while the terminal client waits for files to be sent before quitting
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


class _Output:
    """Standard output, shared by the thread printing events and the script's own messages
    (one lock, so that lines never mix). With ``--json`` a problem is said on stderr and also
    printed as an ``"error"`` JSON line, so that a program reading stdout sees it."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        # If nobody reads our output any more, go on all the same.
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):
            print(text, file=self.out, flush=True)

    def problem(self, message: str) -> None:
        _say(message)
        if self.as_json:
            self.line(problem_json(escape(message, multiline=True)))


class _Terminated(Exception):  # noqa: N818 - a signal turned into control flow, not an error
    """SIGTERM or SIGHUP in scripted mode: quit at once."""


#: Seconds a SIGTERM, SIGHUP or Ctrl-C leaves for the server to close after ``quit``.
SIGNAL_QUIT_TIMEOUT = 1.0


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
    remove_stale_parts(downloads)  # left by a client killed with SIGKILL
    interactive = not (args.actions or args.json or args.listen) and (
        sys.stdin.isatty() and sys.stdout.isatty()
    )
    if interactive:
        from .ui import run  # noqa: PLC0415 - prompt_toolkit is loaded only when needed

        return run(
            endpoint,
            nick=args.nick,
            downloads=downloads,
            color=not (args.no_color or os.environ.get("NO_COLOR")),
            timeout=args.timeout,
            max_file_size=args.max_file_size,
            keep_free=args.keep_free,
        )
    if not args.nick and not sys.stdin.isatty():
        _say("--nick is needed when standard input is not a terminal")
        return ExitCode.USAGE
    return _scripted(args, endpoint, downloads)


def _read_nick() -> str | None:
    """Ask for a nick on the terminal (stdin is one, stdout is not: ``chatclient | tee log``);
    None at the end of input."""
    while True:
        print("nick: ", end="", file=sys.stderr, flush=True)
        raw = sys.stdin.buffer.readline()
        if not raw:
            return None
        nick = _decode(raw).strip()
        problem = nick_error(nick)
        if problem is None:
            return nick
        _say(f"{problem}; choose another")


def _decode(raw: bytes) -> str:
    # Bytes that are not valid in the input's encoding become lone surrogates, which
    # send_text refuses with LocalProtocolError: one bad line never ends the script.
    return raw.decode(sys.stdin.encoding or "utf-8", "surrogateescape").rstrip("\r\n")


def _log_in(
    args: argparse.Namespace, endpoint: Endpoint, downloads: Path, out: _Output
) -> Client | int:
    """Connect and log in: the client, or the exit code. Without ``--nick`` (stdin is a
    terminal), ask for one, and on NE again, as the terminal UI does (spec 8.1)."""
    nick = args.nick
    while True:
        if not nick:
            nick = _read_nick()
            if nick is None:
                return ExitCode.OK
        try:
            return connect(
                endpoint,
                nick,
                downloads=downloads,
                timeout=args.timeout,
                max_file_size=args.max_file_size,
                keep_free=args.keep_free,
            )
        except (LoginRefusedError, LocalProtocolError) as exc:
            out.problem(str(exc))
            if args.nick:
                return ExitCode.NICK_REFUSED
            nick = None  # asked on the terminal: ask again (a new connection, spec 8.1)
        except ConnectError as exc:
            out.problem(str(exc))
            return ExitCode.ERROR


def _scripted(args: argparse.Namespace, endpoint: Endpoint, downloads: Path) -> int:
    out = _Output(sys.stdout, args.json)
    stopping = threading.Event()  # set once a signal or the end has begun the quit

    def terminate(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # already on the way out
        stopping.set()
        scripting.clear()
        raise _Terminated

    scripting = threading.Event()  # set while the main thread may block reading stdin
    signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, terminate) for signum in signals}
    try:
        return _run_script(args, endpoint, downloads, out, scripting=scripting, stopping=stopping)
    except _Terminated:  # during the login
        return ExitCode.OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_script(
    args: argparse.Namespace,
    endpoint: Endpoint,
    downloads: Path,
    out: _Output,
    *,
    scripting: threading.Event,
    stopping: threading.Event,
) -> int:
    client = _log_in(args, endpoint, downloads, out)
    if isinstance(client, int):
        return client
    final: list[Disconnected] = []

    def connection_over() -> None:
        # The main thread may be blocked reading stdin, which the end of the connection does
        # not interrupt: wake it with the same signal as an outside SIGTERM would.
        if scripting.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)

    printer = threading.Thread(
        target=_print_events, args=(client, out, final, connection_over), daemon=True
    )
    status: int = ExitCode.OK
    uploads: list[Future[Any]] = []
    quit_timeout: float | None = None
    try:
        # Inside the try: the connection may end (and signal us) as soon as the printer runs.
        scripting.set()
        printer.start()
        status = _script(args, client, out, uploads)
        scripting.clear()
        if args.listen:
            client.wait_closed()
        else:
            client.quit()  # after the files queued, as long as they make progress
    except KeyboardInterrupt:
        status, quit_timeout = ExitCode.INTERRUPTED, SIGNAL_QUIT_TIMEOUT
    except _Terminated:
        status, quit_timeout = ExitCode.OK, SIGNAL_QUIT_TIMEOUT
    finally:
        stopping.set()
        scripting.clear()
        # Quick after a signal: a file being received is removed, one being sent cut short.
        client.quit(timeout=quit_timeout)
        if printer.ident is not None:  # started
            printer.join(args.timeout)
    if status != ExitCode.OK:
        return status
    if any(f.done() and not f.cancelled() and f.exception() for f in uploads):
        return ExitCode.ERROR  # cut short; the "disconnected" line says why
    return ExitCode.OK if final and final[0].expected else ExitCode.ERROR


def _script(
    args: argparse.Namespace, client: Client, out: _Output, uploads: list[Future[Any]]
) -> int:
    """Send what the arguments or stdin say; the exit code so far. Files still being sent
    are appended to ``uploads``; ``Client.quit`` waits for them."""
    status: int = ExitCode.OK
    replies: list[Future[Any]] = []  # answers to wait for before quitting
    try:
        if args.actions:
            for kind, value in args.actions:
                if kind == "text":
                    if not _send_text(client, value, out):
                        status = ExitCode.TEXT_ERROR
                elif not _send_file(client, value, uploads, out):
                    return ExitCode.FILE_ERROR
        elif not args.listen:
            # Bytes, decoded here: the text layer's errors setting depends on the locale.
            for raw in sys.stdin.buffer:
                command = parse(_decode(raw))
                if isinstance(command, Quit):
                    break
                problem = _run_line(client, command, replies, uploads, out)
                if problem:
                    status = problem
    except ChatError:
        return status  # the connection is over; the printer shows why
    wait_futures(replies, timeout=args.timeout)
    return status


def _run_line(
    client: Client,
    command: object,
    replies: list[Future[Any]],
    uploads: list[Future[Any]],
    out: _Output,
) -> int:
    """Do one command read from stdin; an exit code if it could not be done, else 0."""
    if isinstance(command, Say):
        if not _send_text(client, command.text, out):
            return ExitCode.TEXT_ERROR
    elif isinstance(command, ListUsers):
        replies.append(client.list_users())
    elif isinstance(command, ChangeNick):
        replies.append(client.change_nick(command.nick))
    elif isinstance(command, SendFile):
        if not _send_file(client, os.path.expanduser(command.path), uploads, out):
            return ExitCode.FILE_ERROR
    elif isinstance(command, Help):
        print(HELP, file=sys.stderr)
    elif isinstance(command, Problem):
        out.problem(command.message)
    elif isinstance(command, Clear) or command is None:
        pass
    return ExitCode.OK


def _send_text(client: Client, text: str, out: _Output) -> bool:
    try:
        client.send_text(text)
    except LocalProtocolError as exc:
        out.problem(f"not sent: {exc}: {text}")
        return False
    return True


def _send_file(client: Client, path: str, uploads: list[Future[Any]], out: _Output) -> bool:
    try:
        uploads.append(client.send_file(path))
    except OSError as exc:
        out.problem(f"cannot send {path}: {exc.strerror or exc}")
        return False
    except LocalProtocolError as exc:
        out.problem(f"cannot send {path}: {exc}")
        return False
    return True


def _print_events(
    client: Client,
    out: _Output,
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
        if out.as_json:
            line = event_json(event)
        elif isinstance(event, FileProgress):
            continue  # a line per progress step would drown the output
        else:
            line = f"{timestamp()} {plain(event_fragments(event))}"
        out.line(line)


if __name__ == "__main__":
    sys.exit(main())
