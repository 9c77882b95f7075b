"""The receive buffer: holds received bytes until whole frames can be cut from them.

Modelled on wsproto's ``frame_protocol.Buffer``: a reader *peeks* at a contiguous run of bytes,
and *commits* (consumes) them only once a whole header or frame is there, so a short read is a
plain "not yet", with nothing to roll back. construct never sees partial input.

Received chunks are kept as the ``bytes`` objects the caller gave, not copied into one growing
buffer: a frame that lies inside one chunk is parsed in place, and file data is handed out as
``memoryview`` slices of the chunks (zero copy, spec 2.8.8 data is opaque). Only a run that
straddles chunks is joined, once.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Unconsumed received bytes, as a queue of chunks."""

    __slots__ = ("_chunks", "_pos", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # offset of the first unconsumed byte in self._chunks[0]
        self._size = 0  # unconsumed bytes in all chunks

    def __len__(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        """Append ``data`` (kept by reference: it must not change afterwards)."""
        if data:
            self._chunks.append(data)
            self._size += len(data)

    def peek(self, n: int) -> tuple[bytes, int] | None:
        """The next ``n`` bytes without consuming them, or ``None`` if fewer are buffered.

        Returns ``(block, start)`` such that ``block[start:start + n]`` are those bytes, so the
        caller can parse in place without slicing.
        """
        if self._size < n:
            return None
        first = self._chunks[0]
        if len(first) - self._pos >= n:
            return first, self._pos
        # The run straddles chunks: join just the chunks it needs, once.
        chunks = self._chunks
        parts = [first[self._pos :]]
        have = len(parts[0])
        chunks.popleft()
        while have < n:
            chunk = chunks.popleft()
            parts.append(chunk)
            have += len(chunk)
        block = b"".join(parts)
        chunks.appendleft(block)
        self._pos = 0
        return block, 0

    def commit(self, n: int) -> None:
        """Consume ``n`` bytes that a successful ``peek(n)`` (or larger) returned."""
        self._pos += n
        self._size -= n
        if self._pos == len(self._chunks[0]):
            self._chunks.popleft()
            self._pos = 0

    def take(self, n: int) -> memoryview:
        """Consume and return up to ``n`` bytes (at least one if any is buffered) as a
        read-only view of the first chunk: no copy. Empty if the buffer is empty."""
        if not self._size or n <= 0:
            return memoryview(b"")
        first = self._chunks[0]
        end = min(len(first), self._pos + n)
        view = memoryview(first)[self._pos : end]
        self.commit(end - self._pos)
        return view
