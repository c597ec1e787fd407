"""Pick the core once, at import: Cython unless it is unavailable or refused."""

import os
import sys
from types import ModuleType

IMPLEMENTATION = "python"
core: ModuleType  # fastloop._cy or fastloop._py: the same names (docs/core.md)

if not os.environ.get("FASTLOOP_NO_EXTENSIONS") and sys.implementation.name == "cpython":
    try:
        from . import _cy as core
    except ImportError:  # not built (a pure-Python install, or a source checkout)
        from . import _py as core
    else:
        IMPLEMENTATION = "cython"
else:
    from . import _py as core

__all__ = ["IMPLEMENTATION", "core"]
