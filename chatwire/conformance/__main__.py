"""``chatwire-conformance`` / ``python -m chatwire.conformance``: the command line of the kit.

Three commands:

- ``server URL``: run the server cases against a server already running at URL
  (``tcp://HOST:PORT``, ``unix:///PATH``, ``tls://HOST:PORT?ca=FILE``; a bare ``HOST:PORT``
  means tcp). Run it against a server nobody else uses: the cases log in and out many times.
- ``client --port P`` (or ``--listen URL``): listen as a scripted server; point the client
  under test at it and follow the prompts.
- ``cases``: list the cases (id, section, level, title, and with ``-v`` the requirement).

Common options: ``--only`` and ``--skip`` (ids, id wildcards or section numbers, repeatable or
comma-separated), ``--json FILE``, ``--junit FILE``, ``-q`` (only the rows that need attention:
FAIL, NON-STRICT, ERROR). Exit status: 0 when no MUST requirement failed, 1 when one did (or
the run stopped early because the server stopped answering), 2 for a usage error or an
unreachable server.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from chatwire.transport import EndpointError, connect, parse_endpoint

from .client_mode import CLIENT, ClientKit, ClientOptions, run_client_kit
from .probe import KitOptions
from .registry import Case, SelectionError, select
from .report import (
    Result,
    Run,
    Verdict,
    exit_status,
    format_result,
    print_footer,
    print_header,
    write_json,
    write_junit,
)
from .runner import run_cases
from .server_cases import SERVER

__all__ = ["build_parser", "main"]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4096, 512K, 32M)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SEL",
        help="run only these cases: ids, id wildcards (nick-*) or sections (3.1.4); repeatable",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="SEL", help="leave these cases out"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    parser.add_argument(
        "-q",
        "--quiet-report",
        action="store_true",
        help="print only the FAIL, NON-STRICT and ERROR rows (with their details), then the "
        "summary",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatwire-conformance",
        description="Conformance kit for chatwire servers and clients (spec/protocol.md).",
        epilog="See docs/conformance.md. Exit status: 0 all MUST cases pass, 1 a MUST case "
        "failed, 2 usage error or server unreachable.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="check a running server at URL")
    server.add_argument("url", metavar="URL", help="tcp://HOST:PORT, unix:///PATH, tls://...")
    _add_common(server)
    defaults = KitOptions()
    server.add_argument(
        "--wait",
        type=_positive,
        default=defaults.wait,
        metavar="SECONDS",
        help=f"longest wait for one expected frame (default {defaults.wait:g})",
    )
    server.add_argument(
        "--quiet",
        type=_positive,
        default=defaults.quiet,
        metavar="SECONDS",
        help=f"how long 'nothing arrives' is watched (default {defaults.quiet:g})",
    )
    server.add_argument(
        "--clients",
        type=int,
        default=defaults.clients,
        metavar="N",
        help=f"clients in the many-clients case (default {defaults.clients})",
    )
    server.add_argument(
        "--large-file",
        type=_size,
        default=defaults.large_file,
        metavar="SIZE",
        help="size of the large-file case (default 32M)",
    )
    server.add_argument(
        "--flood",
        type=_size,
        default=defaults.flood,
        metavar="SIZE",
        help="bytes of files sent past a client that does not read, after half as many bytes "
        "of messages (default 16M)",
    )
    server.add_argument(
        "--login-timeout",
        type=_positive,
        metavar="SECONDS",
        help="check that a silent connection is closed within this time (spec 7.2)",
    )
    server.add_argument(
        "--stall-timeout",
        type=_positive,
        metavar="SECONDS",
        help="check that a connection stalled inside a frame is closed within this time",
    )
    server.add_argument(
        "--timeout-scale",
        type=_positive,
        default=1.0,
        metavar="FACTOR",
        help="multiply every case's timeout (slow links)",
    )
    server.add_argument("--vectors", metavar="DIR", help="the spec's vectors (spec/vectors)")
    server.add_argument(
        "--keep-going",
        action="store_true",
        help="run every case even when the server does not answer (by default the run stops "
        "when a first login gets no answer at all, or after 3 cases in a row got none)",
    )

    client = commands.add_parser("client", help="listen for a client under test")
    where = client.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="listen on tcp://127.0.0.1:PORT (0: any port)")
    where.add_argument("--listen", metavar="URL", help="listen on this endpoint URL instead")
    _add_common(client)
    client_defaults = ClientOptions()
    client.add_argument(
        "--wait",
        type=_positive,
        default=client_defaults.wait,
        metavar="SECONDS",
        help=f"wait for the client's connection and each step (default {client_defaults.wait:g})",
    )
    client.add_argument(
        "--hold",
        type=_positive,
        default=client_defaults.hold,
        metavar="SECONDS",
        help="how long the client must stay silent before answers and after NE or quit",
    )
    client.add_argument(
        "--long-text",
        metavar="FILE",
        default=str(Path(tempfile.gettempdir()) / "chatwire-conformance-long-text.txt"),
        help="where the kit writes the long text your client must split (step 7; default: "
        "%(default)s)",
    )
    client.add_argument(
        "--downloads",
        metavar="DIR",
        help="the folder your client saves received files in: the kit checks them",
    )
    client.add_argument(
        "--no-malformed",
        action="store_true",
        help="skip the last step (a third connection is sent a malformed frame)",
    )

    cases = commands.add_parser("cases", help="list the cases")
    cases.add_argument("side", nargs="?", choices=["server", "client"], default=None)
    cases.add_argument("-v", "--verbose", action="store_true", help="quote the requirements")
    return parser


def _print_cases(side: str | None, verbose: bool, out: TextIO) -> int:
    for registry in (SERVER, CLIENT):
        if side not in (None, registry.side):
            continue
        print(f"{registry.side} cases ({len(registry)}):", file=out)
        for case in registry.cases():
            print(f"  {case.id:<30} {case.section:<8} {case.level.value:<6} {case.title}", file=out)
            if verbose:
                print(f'  {"":<30} "{case.requirement}"', file=out)
                if case.also:
                    print(f"  {'':<30} also exercises: {', '.join(case.also)}", file=out)
    return 0


_ATTENTION = (Verdict.FAIL, Verdict.NON_STRICT, Verdict.ERROR)


def _shown(result: Result, args: argparse.Namespace) -> bool:
    """Whether the terminal report prints ``result``'s row (``-q``: only those needing action)."""
    return not args.quiet_report or result.verdict in _ATTENTION


def _report(run: Run, args: argparse.Namespace, out: TextIO) -> int:
    print_footer(out, run)
    if args.json:
        write_json(args.json, run)
    if args.junit:
        write_junit(args.junit, run)
    return exit_status(run.results)


def _choose(cases: Sequence[Case], args: argparse.Namespace, err: TextIO) -> list[Case] | None:
    try:
        return select(cases, args.only, args.skip)
    except SelectionError as exc:
        print(f"chatwire-conformance: {exc}", file=err)
        return None


def _server(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        endpoint = parse_endpoint(args.url)
    except EndpointError as exc:
        print(f"chatwire-conformance: {exc}", file=err)
        return 2
    cases = _choose(SERVER.cases(), args, err)
    if cases is None:
        return 2
    try:
        connect(endpoint, timeout=args.wait).close()
    except (OSError, EndpointError) as exc:
        print(f"chatwire-conformance: cannot connect to {endpoint.url}: {exc}", file=err)
        return 2
    options = KitOptions(
        wait=args.wait,
        quiet=args.quiet,
        clients=args.clients,
        large_file=args.large_file,
        flood=args.flood,
        login_timeout=args.login_timeout,
        stall_timeout=args.stall_timeout,
        timeout_scale=args.timeout_scale,
        vectors=args.vectors,
        keep_going=args.keep_going,
    )
    run = Run(mode="server", target=endpoint.url)
    print_header(out, run, len(cases))

    def show(result: Result) -> None:
        if _shown(result, args):
            print("\n".join(format_result(result)), file=out, flush=True)

    started = time.monotonic()
    run.results = run_cases(cases, endpoint, options, on_result=show)
    run.duration = time.monotonic() - started
    return _report(run, args, out)


def _client(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    url = args.listen or f"tcp://127.0.0.1:{args.port if args.port is not None else 1234}"
    try:
        endpoint = parse_endpoint(url)
        cases = _choose(CLIENT.cases(), args, err)
        if cases is None:
            return 2
        options = ClientOptions(
            wait=args.wait,
            hold=args.hold,
            long_text_file=args.long_text,
            downloads=args.downloads,
            malformed=not args.no_malformed,
        )
        kit = ClientKit(endpoint, options, out)
    except (EndpointError, OSError) as exc:
        print(f"chatwire-conformance: cannot listen on {url}: {exc}", file=err)
        return 2
    print(f"listening on {kit.url}", file=out, flush=True)
    run = run_client_kit(kit, cases)
    print_header(out, run, len(cases))
    for result in run.results:
        if _shown(result, args):
            print("\n".join(format_result(result)), file=out)
    return _report(run, args, out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command == "cases":
        return _print_cases(args.side, args.verbose, out)
    if args.command == "server":
        return _server(args, out, err)
    return _client(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
