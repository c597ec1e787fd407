"""The pure-Python core of fastloop: the twin of ``fastloop._cy`` (see docs/core.md)."""

from .coreloop import CoreLoop
from .datagram import DatagramTransport
from .handles import Handle, TimerHandle
from .pipe import ReadPipeTransport, WritePipeTransport
from .poller import READ, WRITE, Poller
from .stream import SocketTransport
from .timers import TimerQueue
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
