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
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
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

__all__ = ["STYLE", "ChatUI", "CommandCompleter", "run"]

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
        # Transfers in progress, shown in the toolbar: (direction, name) -> last progress.
        self._transfers: dict[tuple[str, str], FileProgress] = {}

    # --- Output -----------------------------------------------------------------------------

    def show(self, fragments: Fragments) -> None:
        """Print one line above the prompt, with a timestamp."""
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
        for (direction, name), progress in self._transfers.items():
            arrow = "↓" if direction == "in" else "↑"
            text = progress_text(progress.done, progress.size, progress.elapsed)
            parts.append(("", f" {arrow} {escape(name)} {text} "))
        return FormattedText(parts)

    # --- Running ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Ask for a nick, log in, chat until /quit or the end of the connection."""
        try:
            client = await self._log_in()
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        if client is None:
            return ExitCode.ERROR if self._ended is not None else ExitCode.OK
        self._client = client
        try:
            return await self._chat(client)
        finally:
            client.close()

    async def _log_in(self) -> Client | None:
        session: PromptSession[str] = PromptSession(style=STYLE, color_depth=self._depth)
        nick = self._nick
        while True:
            if nick is None:
                try:
                    nick = (await session.prompt_async("nick: ")).strip()
                except EOFError:
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
            style=STYLE,
            color_depth=self._depth,
        )
        self._session = session
        while self._ended is None:
            try:
                line = await session.prompt_async(self._prompt, pre_run=self._exit_if_ended)
            except (EOFError, KeyboardInterrupt):
                line = "/quit"
            if self._ended is not None:
                break
            if not await self._command(client, line or ""):
                break
        await self._ended_flag.wait()
        assert self._ended is not None
        return ExitCode.OK if self._ended.expected else ExitCode.ERROR

    def _exit_if_ended(self) -> None:
        # The connection may end between two prompts: then leave at once.
        if self._ended is not None and self._session is not None:
            self._session.app.exit(result="")

    async def _command(self, client: Client, line: str) -> bool:
        """Do what ``line`` says; False to stop."""
        command = parse(line)
        try:
            if command is None:
                pass
            elif isinstance(command, Say):
                client.send_text(command.text)
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
                await asyncio.to_thread(client.quit)
                return False
            elif isinstance(command, Problem):
                self.error(command.message)
        except ChatError:
            pass  # the connection is over; its Disconnected event says why
        return True

    def _send_file(self, client: Client, typed: str) -> None:
        path = Path(os.path.expanduser(typed))
        try:
            client.send_file(path)
        except OSError as exc:
            self.error(f"cannot send {typed}: {exc.strerror or exc}")
            return
        except LocalProtocolError as exc:
            self.error(f"cannot send {typed}: {exc}; rename it first")
            return
        size = path.stat().st_size
        self.info(f"sending {path.name} ({human_size(size)})")
        self._transfers[("out", path.name)] = FileProgress(
            direction="out", name=path.name, done=0, size=size, elapsed=0.0
        )

    def _on_event(self, event: ClientEvent) -> None:
        # On the loop's thread, in the order the client produced the events.
        if isinstance(event, FileProgress):
            self._transfers[(event.direction, event.name)] = event
        elif isinstance(event, FileIncoming):
            self._transfers[("in", event.name)] = FileProgress(
                direction="in", name=event.name, done=0, size=event.size, elapsed=0.0
            )
        elif isinstance(event, FileSaved | FileDiscarded):
            self._transfers.pop(("in", event.name), None)
        elif isinstance(event, FileSent):
            self._transfers.pop(("out", event.name), None)
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
