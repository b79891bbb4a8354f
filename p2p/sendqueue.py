"""The bounded queue of encoded frames waiting to be written to one peer.

Bounded both in frames and in bytes, so a slow or stalled peer costs us at
most ``max_bytes`` of memory: once full, ``put`` refuses and the caller drops
the frame (and counts it). The writer takes frames in batches that fit one
websocket message.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SendQueue"]


class SendQueue:
    """FIFO of encoded frames with a frame bound and a byte bound."""

    __slots__ = ("_frames", "_bytes", "_max_frames", "_max_bytes")

    def __init__(self, *, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Bytes currently queued."""
        return self._bytes

    def put(self, frame: bytes) -> bool:
        """Queue ``frame``; False (and nothing queued) if a bound would be exceeded."""
        size = len(frame)
        if len(self._frames) >= self._max_frames or self._bytes + size > self._max_bytes:
            return False
        self._frames.append(frame)
        self._bytes += size
        return True

    def take_batch(self, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest frames whose total fits ``max_bytes``.

        Always returns at least one frame when the queue is not empty (a
        single frame never exceeds the message bound: it is checked when
        encoded).
        """
        frames = self._frames
        batch: list[bytes] = []
        total = 0
        while frames:
            size = len(frames[0])
            if batch and total + size > max_bytes:
                break
            batch.append(frames.popleft())
            total += size
        self._bytes -= total
        return batch

    def clear(self) -> int:
        """Drop everything queued; return how many frames were dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        self._bytes = 0
        return dropped
