"""`python -m fastloop [bench]`: compare fastloop's cores with other loops on this machine."""

import sys

from fastloop._bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
