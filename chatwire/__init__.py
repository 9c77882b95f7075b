"""chatwire: the chatwire chat protocol (spec/protocol.md) as a sans-I/O library.

Bytes in, events out; events in, bytes out; no sockets, no threads::

    import chatwire

    conn = chatwire.Connection(chatwire.Role.CLIENT)
    sock.sendall(conn.send(chatwire.Login(nick="ana")))
    conn.receive_data(sock.recv(65536))
    for event in conn.events():
        print(event)            # Accepted(), MessageRelay(sender='bob', text='hi'), ...

Frames are declared with construct in ``chatwire._wire`` (the reference), parsed by a faster
equivalent path, and checked against the state machine of spec 4.3. I/O helpers shared by the
reference server, client and conformance kit live in ``chatwire.transport``, outside this core.
"""

from ._codec import encode
from ._connection import MAX_BUFFERED, NEED_DATA, PAUSED, Connection, Role
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    Accepted,
    ConnectionClosed,
    Event,
    File,
    FileData,
    FileEnd,
    FileRelay,
    ListReply,
    ListRequest,
    Login,
    Message,
    MessageRelay,
    NickChanged,
    NickRequest,
    Notice,
    Quit,
    Refused,
)
from ._limits import FILE_MAX, HEADER_SIZE, LIST_MAX, NAME_MAX, NICK_MAX, TEXT_MAX
from ._state import State
from ._text import file_name_error, is_valid_nick, nick_error, nick_key, split_text

__version__ = "0.1.0"

#: The default TCP port (spec Appendix A).
DEFAULT_PORT = 1234

__all__ = [
    "DEFAULT_PORT",
    "FILE_MAX",
    "HEADER_SIZE",
    "LIST_MAX",
    "MAX_BUFFERED",
    "NAME_MAX",
    "NEED_DATA",
    "NICK_MAX",
    "PAUSED",
    "TEXT_MAX",
    "Accepted",
    "Connection",
    "ConnectionClosed",
    "Event",
    "File",
    "FileData",
    "FileEnd",
    "FileRelay",
    "ListReply",
    "ListRequest",
    "LocalProtocolError",
    "Login",
    "Message",
    "MessageRelay",
    "NickChanged",
    "NickRequest",
    "Notice",
    "ProtocolError",
    "Quit",
    "Refused",
    "RemoteProtocolError",
    "Role",
    "State",
    "encode",
    "file_name_error",
    "is_valid_nick",
    "nick_error",
    "nick_key",
    "split_text",
]
