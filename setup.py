"""Build fastloop: the Cython core as one extension, or a pure-Python package.

FASTLOOP_NO_EXTENSIONS=1 skips the extension (a pure-Python build);
FASTLOOP_DEBUG_BUILD=1 compiles the core with -O0 -g for gdb and sanitizers.
"""

import glob
import os
import sys

from setuptools import setup

NO_EXTENSIONS = bool(os.environ.get("FASTLOOP_NO_EXTENSIONS"))
DEBUG_BUILD = bool(os.environ.get("FASTLOOP_DEBUG_BUILD"))


def core_extension():
    from Cython.Build import cythonize
    from setuptools import Extension

    # Release builds leave out the debug info Python's CFLAGS ask for (-g): it is
    # four fifths of the module's size, and FASTLOOP_DEBUG_BUILD is there for gdb.
    cflags = ["-O0", "-g3"] if DEBUG_BUILD else ["-O2", "-g0"]
    ext = Extension(
        "fastloop._cy.core",
        ["src/fastloop/_cy/core.pyx"],
        include_dirs=["src/fastloop/_cy/includes"],
        # The C headers: an edit there rebuilds the module too (Cython tracks the .pyx).
        depends=sorted(glob.glob("src/fastloop/_cy/includes/*.h")),
        extra_compile_args=cflags,
    )
    return cythonize(
        [ext],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "embedsignature": True,
        },
    )


if NO_EXTENSIONS or sys.implementation.name != "cpython":
    print("fastloop: pure-Python build (FASTLOOP_NO_EXTENSIONS or not CPython)")
    setup(ext_modules=[])
else:
    print("fastloop: accelerated build (Cython core)")
    setup(ext_modules=core_extension())
