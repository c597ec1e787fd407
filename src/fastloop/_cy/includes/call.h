/* Running a callback in a contextvars.Context, as asyncio's Handle._run does with
 * Context.run, without a Python-level call and without Cython's try statement (which
 * saves and restores the thread's handled-exception state on entry, on the success path
 * too). handles.pyx: Handle._run_c.
 *
 *   fl_run_in_context(callback, args, context)
 *       callback(*args) with context entered; args an exact tuple, context an exact
 *       Context. 0, or -1 with the exception set (the callback's, once context is
 *       exited again).
 *   fl_reraise()
 *       -1: lets Cython code catch the exception that is already set, with `try`.
 */
#ifndef FASTLOOP_CALL_H
#define FASTLOOP_CALL_H

#include <Python.h>

static int fl_run_in_context(PyObject *callback, PyObject *args, PyObject *context)
{
    PyObject *result;
    if (PyContext_Enter(context) < 0)
        return -1;
    /* The tuple's items are the arguments; it holds them while the call runs. */
    result = PyObject_Vectorcall(callback, &PyTuple_GET_ITEM(args, 0),
                                 PyTuple_GET_SIZE(args), NULL);
    if (result != NULL) {
        Py_DECREF(result);
        return PyContext_Exit(context);
    }
    /* As a `finally:` does: exit with the callback's exception put aside. Exiting a
     * context this thread just entered cannot fail; if it did, its error would win. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    if (PyContext_Exit(context) < 0) {
        Py_XDECREF(exc);
        return -1;
    }
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyContext_Exit(context) < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    PyErr_Restore(type, value, tb);
#endif
    return -1;
}

static inline int fl_reraise(void)
{
    return -1;
}

#endif /* FASTLOOP_CALL_H */
