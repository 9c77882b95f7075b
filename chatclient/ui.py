"""The interactive terminal client: a nick prompt, then chat with the paper's commands.

Why prompt_toolkit. The paper's client has one thread reading the keyboard and one printing
what arrives, so an incoming message is printed over the half-typed line and garbles it. Here
the input line belongs to a line editor (prompt_toolkit's ``PromptSession``) and everything
else is printed *above* it: ``print_formatted_text`` while the prompt runs goes through
``run_in_terminal``, which erases the prompt, prints, and draws the prompt again with the typed
text and cursor unchanged. So a message can arrive at any moment without touching the line
being typed. It also gives history, Tab completion (commands, and paths after ``/sendFile``),
colours, and a bottom toolbar where file transfers show their progress (bytes, percent, rate)
without printing a line per update.

How it works: one asyncio loop (prompt_toolkit's) runs the prompt and handles commands; the
`chatclient.client.Client` runs its own I/O thread; a small thread here blocks on
``Client.events()`` and hands each event to the loop with ``call_soon_threadsafe``, so all
printing happens on the loop's thread, in the order the events came. Every string from the
network is shown through `chatclient.display` (spec 8.5).

The nick prompt follows the paper (spec 8.1): on ``NE`` it says the nick is taken and asks
again, and the next try is a new connection (`chatclient.client.connect` opens one each time).

Leaving. ``/quit``, Ctrl-D, and Ctrl-C on an empty line quit (exit code 0); Ctrl-C on a line
being typed only clears it. Quitting waits for the files being sent (and says so); a second
Ctrl-C then aborts them (exit code 130), and a server that stopped reading is given up on after
``quit_timeout`` seconds without progress (`chatclient.client.Client.quit`). SIGTERM and
SIGHUP (the terminal was closed) leave at once: ``quit`` is sent if nothing is queued before
it, the connection is closed within `SIGNAL_QUIT_TIMEOUT` seconds, and a file being received is
removed. If the server ends the connection while a line is being typed, the line is printed, so
that it can be copied and sent again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.shortcuts import clear
from prompt_toolkit.styles import Style

from chatwire import LocalProtocolError, nick_error
from chatwire.transport import Endpoint

from .client import (
    DEFAULT_KEEP_FREE,
    DEFAULT_MAX_FILE_SIZE,
    ChatError,
    Client,
    ClientEvent,
    ConnectError,
    Disconnected,
    FileDiscarded,
    FileIncoming,
    FileProgress,
    FileSaved,
    FileSent,
    LoginRefusedError,
    connect,
)
from .commands import (
    COMMAND_NAMES,
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
from .display import (
    Fragments,
    escape,
    escape_fragments,
    event_fragments,
    human_size,
    nick_color,
    progress_text,
    timestamp,
)

__all__ = ["SIGNAL_QUIT_TIMEOUT", "STYLE", "ChatUI", "CommandCompleter", "run"]

#: Seconds a SIGTERM or SIGHUP leaves for the server to close after ``quit`` before we close.
SIGNAL_QUIT_TIMEOUT = 1.0
#: Seconds the terminal UI is given to finish after a SIGHUP's quit, before it is abandoned.
_HANGUP_GRACE = 0.5
#: Seconds between redraws of the toolbar while files are moving (rates, "stalled").
_TICK = 0.5

STYLE = Style.from_dict(
    {
        "time": "#808080",
        "notice": "italic #a0a0a0",
        "info": "#5f9f9f",
        "error": "bold #d75f5f",
        "escape": "reverse",
        "file": "underline",
        "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
    }
)


class CommandCompleter(Completer):
    """Tab completion: command names after ``/`` (any case), paths after ``/sendFile``."""

    def __init__(self) -> None:
        self._paths = PathCompleter(expanduser=True)

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or text.startswith("//"):
            return
        name, space, rest = text.partition(" ")
        if not space:
            for command in COMMAND_NAMES:
                if command.lower().startswith(name.lower()):
                    yield Completion(command, start_position=-len(name))
            return
        if name.lower() == "/sendfile":
            argument = rest.lstrip()
            yield from self._paths.get_completions(
                Document(argument, len(argument)), complete_event
            )


@dataclass(slots=True)
class _Transfer:
    """A file shown in the toolbar. Times are the UI's own ``time.monotonic()``, so the rate
    and "stalled" are computed at each redraw, not frozen at the last progress event."""

    direction: str  # "in" or "out"
    name: str
    size: int
    done: int = 0
    started: float | None = None  # None: an upload still queued behind another
    changed: float = 0.0  # when ``done`` last grew (or the transfer appeared)

    def text(self, now: float) -> str:
        if self.started is None:
            return f"{human_size(self.size)}, queued"
        return progress_text(self.done, self.size, now - self.started, idle=now - self.changed)


class ChatUI:
    """One run of the terminal client. `run` does it all."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        nick: str | None,
        downloads: Path,
        color: bool = True,
        timeout: float = 10.0,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        keep_free: int = DEFAULT_KEEP_FREE,
    ) -> None:
        self.endpoint = endpoint
        self.downloads = downloads
        self.timeout = timeout
        self.limits = {"max_file_size": max_file_size, "keep_free": keep_free}
        self._nick = nick
        self._depth = None if color else ColorDepth.MONOCHROME
        self._client: Client | None = None
        self._session: PromptSession[str] | None = None
        self._ended: Disconnected | None = None
        self._ended_flag = asyncio.Event()
        # Transfers in progress, shown in the toolbar, by transfer number (names may repeat).
        self._transfers: dict[int, _Transfer] = {}
        self._status: int | None = None  # an exit code decided locally (a second Ctrl-C)
        self._signalled = ""  # the name of a SIGTERM or SIGHUP received
        self._main: asyncio.Task[int] | None = None  # the task of `run`, cancelled on a hangup
        self._unsent = ""  # the line being typed when the connection ended

    # --- Output -----------------------------------------------------------------------------

    def show(self, fragments: Fragments) -> None:
        """Print one line above the prompt, with a timestamp."""
        if self._signalled == "SIGHUP":
            return  # the terminal is gone: writing to it fails or blocks
        print_formatted_text(
            FormattedText([("class:time", timestamp() + " "), *fragments]),
            style=STYLE,
            color_depth=self._depth,
        )

    def info(self, text: str) -> None:
        self.show([("class:info", "* "), *escape_fragments(text, "class:info", multiline=True)])

    def error(self, text: str) -> None:
        self.show([("class:error", "* "), *escape_fragments(text, "class:error", multiline=True)])

    def _prompt(self) -> FormattedText:
        nick = self._client.nick if self._client is not None else ""
        return FormattedText([*escape_fragments(nick, f"bold fg:{nick_color(nick)}"), ("", "> ")])

    def _toolbar(self) -> FormattedText:
        if not self._transfers:
            return FormattedText([("", " /help: commands   Tab: complete   Ctrl-D: quit ")])
        parts: Fragments = []
        now = time.monotonic()
        for transfer in self._transfers.values():
            arrow = "↓" if transfer.direction == "in" else "↑"
            parts.append(("", f" {arrow} {escape(transfer.name)} {transfer.text(now)} "))
        return FormattedText(parts)

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            # Ctrl-C clears a line being typed; on an empty line it quits like /quit.
            buffer = event.app.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

        return bindings

    async def _tick(self) -> None:
        # Redraw the toolbar while files move: the rate and "stalled" depend on the time now.
        while self._ended is None:
            await asyncio.sleep(_TICK)
            session = self._session
            if self._transfers and session is not None and session.app.is_running:
                session.app.invalidate()

    # --- Running ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Ask for a nick, log in, chat until /quit or the end of the connection."""
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            return await self._run()
        except asyncio.CancelledError:
            if self._signalled != "SIGHUP":
                raise
            return ExitCode.OK  # abandoned after a hangup (`_abandon_terminal`): the quit is done
        finally:
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _run(self) -> int:
        try:
            client = await self._log_in()
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        if client is None:
            return ExitCode.ERROR if self._ended is not None else ExitCode.OK
        self._client = client
        if self._signalled:  # arrived while logging in
            self._on_signal(0)
        try:
            return await self._chat(client)
        finally:
            client.close()  # a file being received is removed (spec 8.4)

    def _on_signal(self, signum: int) -> None:
        """SIGTERM or SIGHUP: leave at once (see the module docstring)."""
        if signum:
            self._signalled = signal.Signals(signum).name
        client = self._client
        if client is not None:
            # quit() blocks (up to the limit): not on the loop, which must keep running.
            threading.Thread(
                target=self._quit_on_signal,
                args=(client, asyncio.get_running_loop()),
                name="chatclient-ui-signal",
                daemon=True,
            ).start()
        session = self._session
        if session is not None and session.app.is_running and not session.app.is_done:
            session.app.exit(result="")

    def _quit_on_signal(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        client.quit(timeout=SIGNAL_QUIT_TIMEOUT)
        if self._signalled == "SIGHUP":
            with contextlib.suppress(RuntimeError):  # the loop has ended: so has the UI
                loop.call_soon_threadsafe(loop.call_later, _HANGUP_GRACE, self._abandon_terminal)

    def _abandon_terminal(self) -> None:
        # Closing the terminal can leave prompt_toolkit finishing its prompt for ever: its
        # reads fail without ending the input, and it waits for answers (cursor position
        # reports) no terminal will send; seen as a client spinning at 100 % CPU after its
        # window closed. The connection has ended by now, so nothing is lost by cancelling:
        # `_run` still closes the client (removing a partial file), and `run` exits 0.
        main = self._main
        if main is not None and not main.done():
            main.cancel()

    async def _log_in(self) -> Client | None:
        session: PromptSession[str] = PromptSession(style=STYLE, color_depth=self._depth)
        self._session = session  # so that a signal can end the prompt
        nick = self._nick
        while True:
            if nick is None:
                try:
                    nick = (await session.prompt_async("nick: ")).strip()
                except EOFError:
                    return None
                if self._signalled:
                    return None
            problem = nick_error(nick)
            if problem is not None:
                # The server would answer NE; saying why is kinder (spec 2.8.3).
                self.error(f"{problem}; choose another")
                nick = None
                continue
            try:
                return await asyncio.to_thread(
                    functools.partial(
                        connect,
                        self.endpoint,
                        nick,
                        downloads=self.downloads,
                        timeout=self.timeout,
                        **self.limits,
                    )
                )
            except LoginRefusedError:
                # spec 3.1.1, 8.1: that connection is over; the next try opens a new one.
                self.error(f"the nick {nick} is taken (or refused by the server); choose another")
                nick = None
            except ConnectError as exc:
                self.error(str(exc))
                self._ended = Disconnected(reason=str(exc), expected=False)
                return None

    async def _chat(self, client: Client) -> int:
        loop = asyncio.get_running_loop()
        self.info(
            f"logged in as {client.nick} on {client.url}; files you receive are saved in "
            f"{self.downloads}; /help lists the commands"
        )

        def pump() -> None:
            for event in client.events():
                try:
                    loop.call_soon_threadsafe(self._on_event, event)
                except RuntimeError:  # the loop is closed: the UI has already ended
                    return

        threading.Thread(target=pump, name="chatclient-ui-events", daemon=True).start()
        session: PromptSession[str] = PromptSession(
            completer=CommandCompleter(),
            complete_while_typing=False,
            history=InMemoryHistory(),
            bottom_toolbar=self._toolbar,
            erase_when_done=True,  # the line comes back as a timestamped echo
            key_bindings=self._key_bindings(),
            style=STYLE,
            color_depth=self._depth,
        )
        self._session = session
        ticker = asyncio.create_task(self._tick())
        try:
            while self._ended is None and not self._signalled:
                interrupted = False
                try:
                    line = await session.prompt_async(self._prompt, pre_run=self._exit_if_ended)
                except KeyboardInterrupt:  # Ctrl-C on an empty line
                    line, interrupted = "/quit", True
                except EOFError:  # Ctrl-D on an empty line
                    line = "/quit"
                except OSError as exc:  # EIO: the terminal was closed (SIGHUP is on its way)
                    if exc.errno != errno.EIO and not self._signalled:
                        raise
                    self._on_signal(signal.SIGHUP)
                    break
                if self._ended is not None or self._signalled:
                    break
                if not await self._command(client, line or "", interrupted=interrupted):
                    break
            if self._unsent:
                self.error("the connection ended before this line was sent; here it is to copy:")
                self.show(escape_fragments(self._unsent, multiline=True))
            await self._ended_flag.wait()
        finally:
            ticker.cancel()
        assert self._ended is not None
        if self._status is not None:
            return self._status
        return ExitCode.OK if self._ended.expected else ExitCode.ERROR

    def _exit_if_ended(self) -> None:
        # The connection may end between two prompts: then leave at once.
        if self._ended is not None and self._session is not None:
            self._session.app.exit(result="")

    async def _command(self, client: Client, line: str, *, interrupted: bool = False) -> bool:
        """Do what ``line`` says; False to stop. ``interrupted``: it is a Ctrl-C's /quit."""
        command = parse(line)
        try:
            if command is None:
                pass
            elif isinstance(command, Say):
                try:
                    client.send_text(command.text)
                except LocalProtocolError as exc:
                    # Bytes that are not UTF-8 typed in a terminal of another encoding arrive
                    # as lone surrogates (prompt_toolkit reads with surrogateescape).
                    self.error(
                        f"not sent: {exc}; is the terminal set to UTF-8? The line was: "
                        + escape(command.text, multiline=True)
                    )
                    return True
                self.show(
                    [
                        ("", "<"),
                        *escape_fragments(client.nick, f"bold fg:{nick_color(client.nick)}"),
                        ("", "> "),
                        *escape_fragments(command.text, multiline=True),
                    ]
                )
            elif isinstance(command, ListUsers):
                client.list_users()  # the answer comes as a UserList event
            elif isinstance(command, ChangeNick):
                problem = nick_error(command.nick)
                if problem is not None:
                    self.error(f"{problem}; your nick is still {client.nick}")
                else:
                    client.change_nick(command.nick)
            elif isinstance(command, SendFile):
                self._send_file(client, command.path)
            elif isinstance(command, Help):
                for text in HELP.splitlines():
                    self.show([("class:info", text)])
            elif isinstance(command, Clear):
                clear()
            elif isinstance(command, Quit):
                await self._quit(client, interrupted=interrupted)
                return False
            elif isinstance(command, Problem):
                self.error(command.message)
        except ChatError:
            pass  # the connection is over; its Disconnected event says why
        return True

    async def _quit(self, client: Client, *, interrupted: bool) -> None:
        """Quit; while files are still being sent, say so and let Ctrl-C abort them."""
        sending = [t.name for t in self._transfers.values() if t.direction == "out"]
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGINT)
        if sending:
            # Between prompts the terminal is in cooked mode: Ctrl-C is a SIGINT.
            loop.add_signal_handler(signal.SIGINT, self._abort, client)
            names = ", ".join(escape(name) for name in sending)
            again = "again " if interrupted else ""
            self.info(f"waiting for {names} to finish sending; press Ctrl-C {again}to abort")
        try:
            await asyncio.to_thread(client.quit)
        finally:
            if sending:
                loop.remove_signal_handler(signal.SIGINT)
                if previous is not None:  # back to asyncio.run's own handler
                    signal.signal(signal.SIGINT, previous)

    def _abort(self, client: Client) -> None:
        self._status = ExitCode.INTERRUPTED
        client.close()  # quick: the I/O thread only has to notice; the file is cut short

    def _send_file(self, client: Client, typed: str) -> None:
        path = Path(os.path.expanduser(typed))
        try:
            future = client.send_file(path)
        except OSError as exc:
            self.error(f"cannot send {typed}: {exc.strerror or exc}")
            return
        except LocalProtocolError as exc:
            self.error(f"cannot send {typed}: {exc}; rename it first")
            return
        size = path.stat().st_size
        self.info(f"sending {path.name} ({human_size(size)})")
        self._transfers[future.transfer] = _Transfer(
            "out", path.name, size, changed=time.monotonic()
        )
        loop = asyncio.get_running_loop()
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._upload_over, done, future.transfer)
        )

    def _upload_over(self, future: Future[int], transfer: int) -> None:
        # A file refused when its turn came (or cut short) sends no FileSent: drop it here.
        if future.cancelled() or future.exception() is not None:
            self._transfers.pop(transfer, None)

    def _progress(self, event: FileProgress) -> None:
        now = time.monotonic()
        transfer = self._transfers.get(event.transfer)
        if transfer is None:
            transfer = _Transfer(event.direction, event.name, event.size, changed=now)
            self._transfers[event.transfer] = transfer
        if transfer.started is None:
            transfer.started = now - event.elapsed
        if event.done > transfer.done:
            transfer.done, transfer.changed = event.done, now

    def _on_event(self, event: ClientEvent) -> None:
        # On the loop's thread, in the order the client produced the events.
        if isinstance(event, FileProgress):
            self._progress(event)
        elif isinstance(event, FileIncoming):
            now = time.monotonic()
            self._transfers[event.transfer] = _Transfer(
                "in", event.name, event.size, started=now, changed=now
            )
        elif isinstance(event, FileSaved | FileDiscarded | FileSent):
            self._transfers.pop(event.transfer, None)
        if not isinstance(event, FileProgress):
            self.show(event_fragments(event))
        if isinstance(event, Disconnected):
            self._ended = event
            self._ended_flag.set()
            self._transfers.clear()
            self._exit_if_ended_now()
        elif self._session is not None and self._session.app.is_running:
            self._session.app.invalidate()  # redraw the toolbar

    def _exit_if_ended_now(self) -> None:
        session = self._session
        if session is not None and session.app.is_running and not session.app.is_done:
            self._unsent = session.default_buffer.text  # printed once the prompt is gone
            session.app.exit(result="")


def run(
    endpoint: Endpoint,
    *,
    nick: str | None,
    downloads: Path,
    color: bool = True,
    timeout: float = 10.0,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    keep_free: int = DEFAULT_KEEP_FREE,
) -> int:
    """Run the terminal client until the user quits or the connection ends; the exit code."""
    ui = ChatUI(
        endpoint,
        nick=nick,
        downloads=downloads,
        color=color,
        timeout=timeout,
        max_file_size=max_file_size,
        keep_free=keep_free,
    )
    try:
        return asyncio.run(ui.run())
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
