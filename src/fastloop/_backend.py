"""Which kernel facility a new loop polls with.

The platform's own (epoll on Linux, kqueue on macOS and the BSDs) unless io_uring
is asked for, by ``new_event_loop(backend="io_uring")`` or, for programs that make
their loops elsewhere, the environment variable ``FASTLOOP_BACKEND``. An explicit
request that cannot be met fails and says why; the environment variable falls back
to the platform's backend with one warning per process that says why.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

_Poller = TypeVar("_Poller")

ENV_VAR = "FASTLOOP_BACKEND"
PLATFORM_BACKEND = "epoll" if sys.platform.startswith("linux") else "kqueue"
BACKENDS = (PLATFORM_BACKEND, "io_uring")

_warned = False


def open_poller(poller_class: Callable[..., _Poller], backend: str | None) -> _Poller:
    """A poller of the backend asked for (None: $FASTLOOP_BACKEND, else the platform's)."""
    from_env = backend is None
    if from_env:
        backend = os.environ.get(ENV_VAR) or PLATFORM_BACKEND
    if backend not in BACKENDS:
        origin = f"{ENV_VAR}={backend}" if from_env else f"backend={backend!r}"
        choices = ", ".join(repr(name) for name in BACKENDS)
        raise ValueError(f"unknown event loop backend in {origin}: expected one of {choices}")
    if backend == PLATFORM_BACKEND:
        return poller_class()
    try:
        return poller_class(backend)
    except OSError as exc:
        reason = _explain(exc)
        if not from_env:
            raise RuntimeError(f"the {backend} backend is unavailable: {reason}") from exc
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"{ENV_VAR}={backend}: {backend} is unavailable ({reason}); "
            f"using {PLATFORM_BACKEND}",
            RuntimeWarning,
            stacklevel=_first_frame_outside_fastloop(),
        )
    return poller_class()


def _explain(exc: OSError) -> str:
    """The poller's error, with what usually causes it on Linux."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EPERM:
        disabled = _read_sysctl("kernel/io_uring_disabled")
        if disabled == "2":
            return f"{reason} (the sysctl kernel.io_uring_disabled is 2)"
        if disabled == "1":
            return (f"{reason} (kernel.io_uring_disabled is 1: only the group in "
                    "kernel.io_uring_group may use it)")
        return f"{reason} (a seccomp profile, as containers' default ones, refuses it)"
    if exc.errno == errno.ENOSYS and sys.platform.startswith("linux"):
        return f"{reason} (a kernel without io_uring, or a seccomp profile refusing it)"
    return reason


def _first_frame_outside_fastloop() -> int:
    """warnings.warn's stacklevel for the code that asked fastloop for a loop."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastloop."):
        level, frame = level + 1, frame.f_back
    return level


def _read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()
    except OSError:
        return None
