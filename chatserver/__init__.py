"""chatserver: the reference server of the chatwire protocol.

A single-threaded `selectors` reactor (``reactor``) under pluggable transports (``transports``:
TCP, Unix sockets, TLS), one chatwire `Connection` per client (``session``), the room with its
batched fan-out (``room``) and store-and-forward file spooling (``files``). Run it with
``chatserver`` or ``python -m chatserver``; embed it with `Server`.
"""

from .config import ServerConfig
from .server import Server

__version__ = "0.1.0"

__all__ = ["Server", "ServerConfig"]
