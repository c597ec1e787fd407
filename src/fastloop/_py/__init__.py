"""The pure-Python core of fastloop: the twin of ``fastloop._cy`` (see docs/core.md)."""

from .coreloop import CoreLoop
from .handles import Handle, TimerHandle
from .poller import READ, WRITE, Poller
from .timers import TimerQueue
from .transports import DatagramTransport, ReadPipeTransport, SocketTransport, WritePipeTransport
from .waker import Waker

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
