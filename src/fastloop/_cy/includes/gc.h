/* The cycle collector's view of the loop's C containers (the ready ring, the timer heap).
 *
 * The core keeps handles it made outside the collector while only it holds them
 * (handles.pyx explains the cost this saves). The collector treats every reference an
 * untracked object holds as coming from outside: so a queued handle whose callback or
 * _loop leads back to its loop would keep a dropped loop alive forever. The loop's
 * traverse therefore visits *through* such a handle: it reports the handle's own
 * references as the loop's. That is exact only while the loop holds the sole reference
 * (refcount 1); a handle someone else also holds is skipped here, which can only keep
 * objects alive (never free them early), and gcsupport.pyx tracks those before each full
 * collection.
 *
 *   fl_visit_queued(o, visit, arg)   visit `o`, an object a C container holds one
 *                                    reference to, as a tp_traverse would
 *   fl_type_traverse(type)           the type's tp_traverse, to chain to
 *   fl_set_gc_slots(type, tr, cl)    replace the type's tp_traverse and tp_clear
 */
#ifndef FASTLOOP_GC_H
#define FASTLOOP_GC_H

#include <Python.h>

/* Untracked objects inside untracked objects (a handle's args tuple, its copied
 * Context) are followed this deep; deeper ones are skipped (kept alive). */
#define FL_GC_MAX_DEPTH 8

typedef int (*fl_visitproc)(PyObject *, void *);
typedef int (*fl_traverseproc)(PyObject *, fl_visitproc, void *);
typedef int (*fl_inquiry)(PyObject *);

typedef struct {
    visitproc visit;
    void *arg;
    int depth;
} fl_owned_visit;

static int fl_visit_owned(PyObject *o, void *p)
{
    fl_owned_visit *v = (fl_owned_visit *)p;
    if (o == NULL)
        return 0;
    /* PyType_IS_GC, a flag test, rather than the PyObject_IS_GC call: visiting an
     * object that is not the collector's (a static type) is harmless. */
    if (!PyType_IS_GC(Py_TYPE(o)) || PyObject_GC_IsTracked(o))
        return v->visit(o, v->arg);
#ifdef Py_GIL_DISABLED
    /* Nothing is untracked by the core there, and Py_REFCNT is not exact. */
    return 0;
#else
    traverseproc traverse;
    int r;
    if (Py_REFCNT(o) != 1 || v->depth >= FL_GC_MAX_DEPTH)
        return 0;
    traverse = Py_TYPE(o)->tp_traverse;
    if (traverse == NULL)
        return 0;
    v->depth++;
    r = traverse(o, fl_visit_owned, v);
    v->depth--;
    return r;
#endif
}

static inline int fl_visit_queued(PyObject *o, fl_visitproc visit, void *arg)
{
    fl_owned_visit v;
    v.visit = (visitproc)visit;
    v.arg = arg;
    v.depth = 0;
    return fl_visit_owned(o, &v);
}

static inline fl_traverseproc fl_type_traverse(PyObject *type)
{
    return (fl_traverseproc)((PyTypeObject *)type)->tp_traverse;
}

static inline void fl_set_gc_slots(PyObject *type, fl_traverseproc traverse, fl_inquiry clear)
{
    ((PyTypeObject *)type)->tp_traverse = (traverseproc)traverse;
    ((PyTypeObject *)type)->tp_clear = (inquiry)clear;
}

#endif
