# cython: language_level=3, freethreading_compatible=True
# (freethreading_compatible: on 3.13t+ importing the module leaves the GIL off; what
# makes that safe is written down in docs/free-threading.md.)
# The Cython core of fastloop: one compilation unit, so calls between the files
# below are plain C calls. Declarations live in core.pxd, tunables in consts.pxi,
# platform choices (epoll/kqueue, eventfd/pipe) in includes/compat.h.
#
# Names of cached Python objects carry their module as a prefix (aio_ = asyncio).

cimport cython
from cpython.exc cimport PyErr_SetFromErrno
from cpython.long cimport PyLong_AsDouble
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.errno cimport EINTR, EIO, errno
from libc.math cimport INFINITY, NAN, ceil, isnan
from libc.string cimport memcpy, memset
from posix.unistd cimport close

import asyncio.base_events
import asyncio.coroutines
import asyncio.events
import asyncio.format_helpers
import asyncio.log
import gc
import os
import sys
import threading
import time

from fastloop._backend import open_poller

cdef object os_strerror = os.strerror
cdef object sys_getframe = sys._getframe
cdef object sys_version_info = sys.version_info
cdef object threading_get_ident = threading.get_ident
cdef object time_get_clock_info = time.get_clock_info
cdef object aio_Handle_repr_info = asyncio.events.Handle._repr_info
cdef object aio_extract_stack = asyncio.format_helpers.extract_stack
cdef object aio_format_callback_source = asyncio.format_helpers._format_callback_source
cdef object aio_format_handle = asyncio.base_events._format_handle
cdef object aio_iscoroutine = asyncio.coroutines.iscoroutine
# The public name warns from 3.14 (deprecated); asyncio itself calls the private one there.
cdef object aio_iscoroutinefunction = getattr(
    asyncio.coroutines, '_iscoroutinefunction', asyncio.coroutines.iscoroutinefunction)
cdef object aio_logger = asyncio.log.logger
# What call_soon_threadsafe returns where asyncio has it (3.12.8+, 3.13.1+, 3.14):
# asyncio's own handle, whose lock makes cancel() from another thread wait for a
# running callback; CPython's tests check its type. handles.pyx makes and runs it
# without its Python methods.
cdef object aio_ThreadSafeHandle = getattr(asyncio.events, '_ThreadSafeHandle', None)

READ = FL_READ
WRITE = FL_WRITE

include "consts.pxi"
include "handles.pyx"
include "timers.pyx"
include "poller.pyx"
include "waker.pyx"
include "stats.pyx"
include "fork.pyx"
include "coreloop.pyx"
include "gcsupport.pyx"
include "transport.pyx"
include "stream.pyx"
include "datagram.pyx"
include "pipe.pyx"
