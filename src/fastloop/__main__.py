"""`python -m fastloop [bench]`: compare fastloop's cores with other loops on this machine.

`python -m fastloop stats SCRIPT [ARGS]`: run a program on fastloop and report its loops.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["stats"]:
        from fastloop._statscmd import main as stats_main

        sys.exit(stats_main(sys.argv[2:]))
    from fastloop._bench.runner import main

    sys.exit(main())
