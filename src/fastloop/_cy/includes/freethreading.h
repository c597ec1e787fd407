/* Locks and atomics for free-threaded CPython (3.13t+, Py_GIL_DISABLED), and nothing
 * at all on GIL builds. docs/free-threading.md says which state each one guards.
 *
 * Why not Cython's `with cython.critical_section(obj)`: it takes a reference to obj
 * around the section on every build, two refcount writes that GIL builds would pay
 * on call_soon and on every callback run. These cost nothing there.
 *
 *   fl_lock_t cs; fl_lock(&cs, obj); ...; fl_unlock(&cs);
 *       obj's per-object lock (a PyCriticalSection). Like every critical section it
 *       is released while the thread blocks (a contended lock, I/O with the thread
 *       state detached), so the code between the two calls must not block, take
 *       another object's lock or run Python code: it is then atomic.
 *   fl_load_ssize(p), fl_store_ssize(p, v), fl_add_ssize(p, v),
 *   fl_load_int(p), fl_store_int(p, v)
 *       relaxed atomics for counters and flags read without the lock.
 *   fl_mutex_t m; fl_mutex_lock(&m); ...; fl_mutex_unlock(&m);
 *       a PyMutex (zeroed: unlocked), for state guarded by a lock of its own: the
 *       loop's ready queue, waker and closed flag (coreloop.pyx). Its fast path is
 *       one atomic compare-and-swap inline, where a critical section costs two
 *       calls; the same rules hold (the code between never blocks, takes another
 *       lock or runs Python code), and a thread waiting for it detaches, as for a
 *       critical section.
 *   fl_sole_ref(obj)
 *       true when the caller's reference is the only one to obj, so that no other
 *       thread can reach it. Free-threaded: obj is owned by this thread (biased
 *       reference counting), its local count is 1 and no other thread holds a
 *       reference (shared count 0, no flags); a thread that could raise the shared
 *       count would need a reference first. With the GIL: Py_REFCNT(obj) == 1.
 *   fl_thread_id()
 *       this thread's identity as the free-threaded build stores it in ob_tid; 1
 *       on GIL builds (where it is never compared).
 *   fl_has_weakrefs(obj)
 *       obj's type has weak references and one to obj exists (or existed).
 */
#ifndef FASTLOOP_FREETHREADING_H
#define FASTLOOP_FREETHREADING_H

#include <Python.h>

#ifdef Py_GIL_DISABLED
#  define FL_FREE_THREADED 1
typedef PyCriticalSection fl_lock_t;
#  define fl_lock(cs, obj) PyCriticalSection_Begin((cs), (PyObject *)(obj))
#  define fl_unlock(cs) PyCriticalSection_End(cs)
#  define fl_load_ssize(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#  define fl_store_ssize(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#  define fl_add_ssize(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))
#  define fl_load_int(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#  define fl_store_int(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
static inline int fl_sole_ref(PyObject *obj) {
    return _Py_IsOwnedByCurrentThread(obj)
        && __atomic_load_n(&obj->ob_ref_local, __ATOMIC_RELAXED) == 1
        && __atomic_load_n(&obj->ob_ref_shared, __ATOMIC_RELAXED) == 0;
}
#  define fl_thread_id() _Py_ThreadId()
typedef PyMutex fl_mutex_t;
#  define fl_mutex_lock(m) PyMutex_Lock(m)
#  define fl_mutex_unlock(m) PyMutex_Unlock(m)
#else
#  define FL_FREE_THREADED 0
typedef char fl_lock_t;
#  define fl_lock(cs, obj) ((void)(cs), (void)(obj))
#  define fl_unlock(cs) ((void)(cs))
#  define fl_load_ssize(p) (*(p))
#  define fl_store_ssize(p, v) ((void)(*(p) = (v)))
#  define fl_add_ssize(p, v) ((void)(*(p) += (v)))
#  define fl_load_int(p) (*(p))
#  define fl_store_int(p, v) ((void)(*(p) = (v)))
#  define fl_sole_ref(obj) (Py_REFCNT(obj) == 1)
#  define fl_thread_id() ((uintptr_t)1)
typedef char fl_mutex_t;
#  define fl_mutex_lock(m) ((void)(m))
#  define fl_mutex_unlock(m) ((void)(m))
#endif

static inline int fl_has_weakrefs(PyObject *obj) {
    /* Negative for a class whose weak references CPython manages (3.12+: __weakref__
       in the __slots__ of a Python class, as asyncio's handles have): the list then
       sits before the object, in the part of its allocation that precedes it. */
    Py_ssize_t offset = Py_TYPE(obj)->tp_weaklistoffset;
    return offset != 0 && *(PyObject **)((char *)obj + offset) != NULL;
}

#endif /* FASTLOOP_FREETHREADING_H */
