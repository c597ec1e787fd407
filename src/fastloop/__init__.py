"""fastloop: a fast drop-in replacement for the asyncio event loop."""

# Private names: `from fastloop import *` and dir() show only the API.
import sys as _sys
from typing import Any as _Any

from ._impl import IMPLEMENTATION
from ._loop import Loop, instrument_otel
from ._policy import install, new_event_loop, run
from ._slow import SlowCallback
from ._stats import LoopStats

__version__ = "0.1.0.dev0"

__all__ = [
    "IMPLEMENTATION", "Loop", "LoopStats", "SlowCallback", "install", "instrument_otel",
    "new_event_loop", "run", "__version__",
]

if _sys.version_info >= (3, 14):
    # Policies are deprecated from 3.14 on: looking the class up warns, as looking
    # up asyncio.DefaultEventLoopPolicy does, and it leaves __all__ as asyncio's
    # policy names did.

    def __getattr__(name: str) -> _Any:
        if name == "Policy":
            from ._policy import Policy, warn_policy_deprecated

            warn_policy_deprecated("fastloop.Policy")
            return Policy
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:
    from ._policy import Policy

    __all__ += ["Policy"]
