"""chatclient: the reference client of the chatwire protocol (spec/protocol.md).

A library and a terminal program:

- ``chatclient.client`` (re-exported here): `connect` logs in and returns a thread-safe `Client`
  (send text and files, list users, change nick, quit) whose events (`MessageReceived`,
  `FileSaved`, `UserList`, ..., `Disconnected` last) come in order from `Client.events`.
- ``chatclient.files``: saving received files safely (spec 8.4).
- ``chatclient.display``: showing network text safely (spec 8.5), colours, JSON lines.
- ``chatclient.commands``: what a typed line means (the paper's commands) and the exit codes.
- ``chatclient.ui``: the interactive terminal client (prompt_toolkit).
- ``chatclient`` / ``python -m chatclient``: the program (``chatclient.__main__``).
"""

from .client import (
    ChatError,
    Client,
    ClientEvent,
    ConnectError,
    ConnectionLostError,
    Disconnected,
    FileDiscarded,
    FileFuture,
    FileIncoming,
    FileProgress,
    FileSaved,
    FileSent,
    LoginRefusedError,
    MessageReceived,
    NickAccepted,
    NickRefused,
    NoticeReceived,
    ProgressCallback,
    UserList,
    connect,
)

__version__ = "0.1.0"

__all__ = [
    "ChatError",
    "Client",
    "ClientEvent",
    "ConnectError",
    "ConnectionLostError",
    "Disconnected",
    "FileDiscarded",
    "FileFuture",
    "FileIncoming",
    "FileProgress",
    "FileSaved",
    "FileSent",
    "LoginRefusedError",
    "MessageReceived",
    "NickAccepted",
    "NickRefused",
    "NoticeReceived",
    "ProgressCallback",
    "UserList",
    "connect",
]
