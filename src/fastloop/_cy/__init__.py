"""The Cython core of fastloop (see docs/core.md and docs/transports.md)."""

from .core import (
    READ,
    WRITE,
    CoreLoop,
    DatagramTransport,
    Handle,
    Poller,
    ReadPipeTransport,
    SocketTransport,
    TimerHandle,
    TimerQueue,
    Waker,
    WritePipeTransport,
)

__all__ = [
    "CoreLoop",
    "Handle",
    "TimerHandle",
    "TimerQueue",
    "Poller",
    "Waker",
    "READ",
    "WRITE",
    "SocketTransport",
    "DatagramTransport",
    "ReadPipeTransport",
    "WritePipeTransport",
]
