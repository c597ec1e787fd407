"""The C load generator and echo server (`echoload.c`), compiled on first use.

The echo workloads' client must cost less CPU per round trip than the servers it
measures, or the rows measure the client: the Python client (`echo_client`) spends
more per round trip than fastloop's server does. `echoload` does the same round trips
in C. `build()` compiles it once with the C compiler (`$CC`, else `cc`) into a cache
folder (`$XDG_CACHE_HOME/fastloop`, else `~/.cache/fastloop`), named after a hash of
the source and the command, and returns its path; or raises `Unavailable` saying why
(not Linux, no compiler, the compile failed), and the echo workloads then fall back to
the Python client. `FASTLOOP_BENCH_CLIENT=python` asks for the Python client.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

__all__ = ["Unavailable", "build", "describe"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echoload.c")
CFLAGS = ["-O2"]


class Unavailable(Exception):
    """echoload cannot be built or used here; the message says why."""


_built: str | Unavailable | None = None


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastloop")


def _compile() -> str:
    if os.environ.get("FASTLOOP_BENCH_CLIENT") == "python":
        raise Unavailable("FASTLOOP_BENCH_CLIENT=python")
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"echoload needs Linux (epoll); this is {sys.platform}")
    compiler = shlex.split(os.environ.get("CC") or "cc")
    if not compiler or shutil.which(compiler[0]) is None:
        raise Unavailable(f"no C compiler ({' '.join(compiler) or 'CC is empty'} not found)")
    try:
        with open(SOURCE, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise Unavailable(f"cannot read {SOURCE}: {exc.strerror}") from None
    digest = hashlib.sha256(source + repr(compiler + CFLAGS).encode()).hexdigest()[:16]
    folder = _cache_dir()
    binary = os.path.join(folder, f"echoload-{digest}")
    if os.access(binary, os.X_OK):
        return binary
    try:
        os.makedirs(folder, exist_ok=True)
        # Compiled beside its final name, then renamed: two processes building at once
        # never run a half-written binary.
        fd, partial = tempfile.mkstemp(prefix="echoload-", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise Unavailable(f"cannot write to {folder}: {exc.strerror}") from None
    try:
        done = subprocess.run([*compiler, *CFLAGS, "-o", partial, SOURCE],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-3:])
            raise Unavailable(f"{' '.join(compiler)} failed: {tail}")
        os.replace(partial, binary)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(compiler)} failed: {exc}") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return binary


def build() -> str:
    """Return the path of the echoload binary, compiling it if needed; or raise
    Unavailable. The outcome is kept for the rest of the process."""
    global _built
    if _built is None:
        try:
            _built = _compile()
        except Unavailable as exc:
            _built = exc
    if isinstance(_built, Unavailable):
        raise _built
    return _built


def describe() -> str:
    """One line for the report: which client the echo workloads use here, and why."""
    try:
        path = build()
    except Unavailable as exc:
        return (f"echo client: the Python client (echoload unavailable: {exc}); on a "
                f"small machine the echo rows may then measure the client, not the server")
    return f"echo client: echoload, the C load generator ({path})"
