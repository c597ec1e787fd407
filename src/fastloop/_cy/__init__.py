"""The Cython core of fastloop (see docs/core.md)."""

from .core import READ, WRITE, CoreLoop, Handle, Poller, TimerHandle, TimerQueue, Waker

__all__ = ["CoreLoop", "Handle", "TimerHandle", "TimerQueue", "Poller", "Waker", "READ", "WRITE"]
