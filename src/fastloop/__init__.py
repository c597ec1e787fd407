"""fastloop: a fast drop-in replacement for the asyncio event loop."""

from ._impl import IMPLEMENTATION
from ._loop import Loop
from ._policy import Policy, install, new_event_loop, run

__version__ = "0.1.0.dev0"

__all__ = ["IMPLEMENTATION", "Loop", "Policy", "install", "new_event_loop", "run", "__version__"]
