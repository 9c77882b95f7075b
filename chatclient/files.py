"""Saving received files safely (spec 8.4).

A received name is chosen by another user and is untrusted even when it is valid on the wire
(spec 2.8.5 already rules out ``/``, ``\\``, control and bidirectional characters, ``.`` and
``..``, but allows ``.bashrc``, ``CON``, ``-rf``, 255-byte names and names of spaces). So:

- `safe_name` reduces it to a safe base name: no path separator of any system, none of the
  characters Windows forbids, no control or format characters, no leading dot, space or dash,
  no trailing dot or space, no Windows device name (``CON``, ``nul.txt``...), at most
  `MAX_NAME_BYTES` bytes of UTF-8 (cut between characters, keeping a short extension); if
  nothing is left, `NEUTRAL_NAME`.
- `Download` writes the data, as it arrives, to a temporary file created in the download folder
  itself (so publishing it is a rename on one file system, never a copy). Only when exactly the
  announced number of bytes has arrived does `Download.finish` give it its final name, and never
  over an existing file: it claims ``name``, else ``name (1).ext``, ``name (2).ext``... with
  ``os.link``, which fails instead of overwriting. `Download.discard` (a transfer cut short, a
  disk error) removes the temporary file, so nothing is left behind.

Nothing here joins a received string to a path except `safe_name`'s output, which holds no
separator; the tests check that nothing lands outside the folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "MAX_NAME_BYTES",
    "NEUTRAL_NAME",
    "STALE_PART_AGE",
    "Download",
    "default_downloads",
    "ensure_folder",
    "remove_stale_parts",
    "safe_name",
    "unique_name",
]

#: Longest saved name in UTF-8 bytes: below NAME_MAX (255) so " (123)" always fits.
MAX_NAME_BYTES = 200
#: The name used when nothing of the received name is left.
NEUTRAL_NAME = "received-file"
#: An extension longer than this is treated as part of the name when cutting it.
_MAX_EXTENSION_BYTES = 16
#: How many ``name (N).ext`` candidates to try before giving up.
_MAX_COPIES = 10_000
#: Temporary files of ours (`Download`) are named ``{_PART_PREFIX}XXXXXXXX{_PART_SUFFIX}``.
_PART_PREFIX = ".chatclient-"
_PART_SUFFIX = ".part"
#: A temporary file untouched for this many seconds belongs to no running transfer.
STALE_PART_AGE = 24 * 3600.0

# Separators of POSIX and Windows (and ':' of classic macOS and Windows drive letters), and the
# other characters Windows forbids in names.
_FORBIDDEN = frozenset('/\\:*?"<>|')
# Windows device names, reserved with any extension and in any case ("con.txt", "Nul").
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]
)


def _clean_char(char: str) -> str:
    # Category C: controls, format characters (the bidi overrides among them), surrogates,
    # private use, unassigned; Z except space: line/paragraph separators and odd spaces.
    category = unicodedata.category(char)
    if char in _FORBIDDEN or category[0] == "C" or (category[0] == "Z" and char != " "):
        return "_"
    return char


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes (whole characters)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode("utf-8")) > _MAX_EXTENSION_BYTES:
        return name, ""
    return stem, "." + extension


def safe_name(name: str, *, limit: int = MAX_NAME_BYTES) -> str:
    """A safe base name for a received file name (spec 8.4).

    >>> safe_name(".bashrc"), safe_name("CON"), safe_name("   "), safe_name("a:b")
    ('bashrc', '_CON', 'received-file', 'a_b')
    """
    text = "".join(_clean_char(char) for char in unicodedata.normalize("NFC", name))
    # No leading dot (hidden files, ".", ".."), space or dash (read as an option by tools);
    # no trailing dot or space (Windows drops them, so "a." would be "a").
    text = text.lstrip(". -").rstrip(". ")
    stem, extension = _split_extension(text)
    if stem.split(".")[0].rstrip(" ").upper() in _DEVICES:
        text = "_" + text
        stem = "_" + stem
    if len(text.encode("utf-8")) > limit:
        room = limit - len(extension.encode("utf-8"))
        text = _cut(stem, room).rstrip(". ") + extension
    text = text.rstrip(". ")
    return text if text.lstrip(". -") else NEUTRAL_NAME


def unique_name(name: str, index: int) -> str:
    """The ``index``-th candidate for ``name``: ``a.txt``, ``a (1).txt``, ``a (2).txt``..."""
    if index == 0:
        return name
    stem, extension = _split_extension(name)
    return f"{stem} ({index}){extension}"


def default_downloads() -> Path:
    """The default download folder: ``chatwire-downloads`` in the user's home (the paper)."""
    return Path.home() / "chatwire-downloads"


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed (private to the user) and return it, absolute.

    Raises:
        OSError: it cannot be created, or exists and is not a folder.
    """
    path = Path(folder).expanduser().absolute()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    return path


def remove_stale_parts(
    folder: str | os.PathLike[str], *, max_age: float = STALE_PART_AGE, now: float | None = None
) -> list[Path]:
    """Remove the temporary files a killed client left in ``folder``; the paths removed.

    Only our own naming pattern (``.chatclient-*.part``), only regular files (not symlinks),
    and only those not modified for ``max_age`` seconds: another client may be receiving into
    the same folder right now, and its file is written as data arrives. A client that exits
    normally, or on SIGTERM or SIGHUP, removes its own; this is for SIGKILL and crashes.
    Errors (a file already gone, no permission) are ignored.
    """
    limit = (time.time() if now is None else now) - max_age
    removed: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(_PART_PREFIX) and name.endswith(_PART_SUFFIX)):
                continue
            with contextlib.suppress(OSError):
                if (
                    entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < limit
                ):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


class Download:
    """One file being received into ``folder``: write its data, then `finish` or `discard`.

    Args:
        folder: the download folder (it must exist).
        name: the name as received; only `safe_name` of it is used.
        size: the announced size; `finish` refuses any other.

    Raises:
        OSError: the temporary file cannot be created.
    """

    def __init__(self, folder: Path, name: str, size: int) -> None:
        self.folder = folder
        self.name = safe_name(name)
        self.size = size
        self.received = 0
        # mkstemp: O_EXCL, mode 0600, a name of our own (hidden while incomplete).
        fd, temp = tempfile.mkstemp(prefix=_PART_PREFIX, suffix=_PART_SUFFIX, dir=folder)
        self.temp_path = Path(temp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``.

        Raises:
            OSError: the disk is full, say; call `discard`.
        """
        assert self._file is not None, "write after finish or discard"
        self._file.write(data)
        self.received += data.nbytes if isinstance(data, memoryview) else len(data)

    def finish(self) -> Path:
        """Close the file and give it its final name; returns the path it was saved at.

        Raises:
            ValueError: the bytes received are not the announced size (the file is discarded).
            OSError: it could not be closed or renamed (the file is discarded).
        """
        try:
            assert self._file is not None, "finish after finish or discard"
            self._file.close()
            self._file = None
            if self.received != self.size:
                raise ValueError(f"received {self.received} bytes of {self.size} announced")
            return self._publish()
        except BaseException:
            self.discard()
            raise

    def _publish(self) -> Path:
        for index in range(_MAX_COPIES):
            target = self.folder / unique_name(self.name, index)
            try:
                # link() fails if the target exists: never overwrite (spec 8.4).
                os.link(self.temp_path, target)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                # No hard links on this file system: claim the name with O_EXCL, then rename
                # over our own empty placeholder.
                try:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                except FileExistsError:
                    continue
                os.replace(self.temp_path, target)
                return target
            os.unlink(self.temp_path)
            return target
        raise FileExistsError(errno.EEXIST, f"{_MAX_COPIES} files named like this", self.name)

    def discard(self) -> None:
        """Close and remove the temporary file; nothing is left behind. Idempotent."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)
