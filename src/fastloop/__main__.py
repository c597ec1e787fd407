"""`python -m fastloop`: compare fastloop's cores with asyncio and uvloop on this machine."""

import sys

from fastloop._bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
