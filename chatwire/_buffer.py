"""The receive buffer: holds received bytes until whole frames can be cut from them.

Modelled on wsproto's ``frame_protocol.Buffer``: a reader *peeks* at a contiguous run of bytes,
and *commits* (consumes) them only once a whole header or frame is there, so a short read is a
plain "not yet", with nothing to roll back. construct never sees partial input.

Received chunks are kept as the ``bytes`` objects the caller gave, not copied into one growing
buffer: a frame that lies inside one chunk is parsed in place, and file data is handed out as
``memoryview`` slices of the chunks (zero copy, spec 2.8.8 data is opaque). Only a run that
straddles chunks is copied, and only its own bytes: the chunk it ends in stays where it is,
read from an offset, so a file head that ends early in a 64 MiB chunk costs a copy of the head,
and the data after it is still handed out as views of that chunk.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Unconsumed received bytes, as a queue of chunks.

    Only the first two chunks can start at an offset: ``_chunks[0]`` at ``_pos``, and
    ``_chunks[1]`` at ``_next_pos`` (the rest of a chunk whose head `peek` joined into
    ``_chunks[0]``). Every later chunk is read from its first byte.
    """

    __slots__ = ("_chunks", "_next_pos", "_pos", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # offset of the first unconsumed byte in self._chunks[0]
        self._next_pos = 0  # offset of the first unconsumed byte in self._chunks[1]
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
        chunks = self._chunks
        first = chunks[0]
        if len(first) - self._pos >= n:
            return first, self._pos
        # The run straddles chunks: copy exactly its n bytes into one block (views, so each byte
        # is copied once), and leave the rest of the chunk it ends in behind, by offset.
        parts = [memoryview(first)[self._pos :]]
        have = len(first) - self._pos
        chunks.popleft()
        start = self._next_pos
        while True:
            chunk = chunks[0]
            end = min(len(chunk), start + n - have)
            parts.append(memoryview(chunk)[start:end])
            have += end - start
            if end < len(chunk):
                break  # the rest of this chunk, from `end`, stays queued
            chunks.popleft()
            start = 0
            if have == n:
                break
        block = b"".join(parts)
        chunks.appendleft(block)
        self._pos = 0
        self._next_pos = end if end < len(chunk) else 0
        return block, 0

    def commit(self, n: int) -> None:
        """Consume ``n`` bytes that a successful ``peek(n)`` (or larger) returned."""
        self._pos += n
        self._size -= n
        if self._pos == len(self._chunks[0]):
            self._chunks.popleft()
            self._pos = self._next_pos
            self._next_pos = 0

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

    def clear(self) -> None:
        """Drop every buffered byte (nothing will read them: the stream is over)."""
        self._chunks.clear()
        self._pos = self._next_pos = 0
        self._size = 0
