/* Direct access to the __slots__ of a Python class (asyncio's _ThreadSafeHandle).
 *
 * A slot is a PyObject * field at a fixed offset in the instance; its member
 * descriptor on the class says where. Reading and writing it there skips the
 * descriptor protocol (an attribute lookup and a call per access).
 *
 *   fl_slot_offset(descr)   the offset a member descriptor of an object slot gives,
 *                           or -1 if descr is anything else
 *   fl_new_instance(type)   an instance of a Python class, its slots all unset
 *                           (object.__new__(type) without the call)
 *   fl_new_plain(type)      type() for a type without __init__ whose __new__ takes
 *                           no arguments (the RLock), without the call machinery
 *   fl_slot_init(obj, off, v)
 *                           set a slot of a fresh instance to a new reference to v;
 *                           no other thread can see obj yet
 *   fl_slot_replace(obj, off, v)
 *                           set a slot to a new reference to v, releasing the old
 *                           value, which must not be able to run code (None)
 *   fl_slot_get(obj, off)   a new reference to the slot's value, or NULL with
 *                           AttributeError if it is unset (deleted)
 *   fl_slot(obj, off)       the slot's value, borrowed (NULL if unset)
 *   fl_use_slots_dealloc(type, offsets, n)
 *                           give a subclass made of such slots only (ThreadSafeHandle)
 *                           a deallocator that clears those n slots directly; 0 if the
 *                           class is one it cannot free, and then nothing changes
 */
#ifndef FASTLOOP_SLOTS_H
#define FASTLOOP_SLOTS_H

#include <Python.h>
#include <structmember.h>

#include "freethreading.h"

#ifndef Py_T_OBJECT_EX
#  define Py_T_OBJECT_EX T_OBJECT_EX
#endif

static Py_ssize_t fl_slot_offset(PyObject *descr)
{
    PyMemberDef *member;
    if (Py_TYPE(descr) != &PyMemberDescr_Type)
        return -1;
    member = ((PyMemberDescrObject *)descr)->d_member;
    return member->type == Py_T_OBJECT_EX ? member->offset : -1;
}

#define fl_slot(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline PyObject *fl_new_instance(PyObject *type)
{
    return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
}

static inline PyObject *fl_new_plain(PyObject *type)
{
    PyObject *none = PyTuple_New(0);  /* the empty tuple, a singleton */
    PyObject *obj;
    if (none == NULL)
        return NULL;
    obj = ((PyTypeObject *)type)->tp_new((PyTypeObject *)type, none, NULL);
    Py_DECREF(none);
    return obj;
}

static inline void fl_slot_init(PyObject *obj, Py_ssize_t off, PyObject *v)
{
    Py_INCREF(v);
    fl_slot(obj, off) = v;
}

static inline void fl_slot_replace(PyObject *obj, Py_ssize_t off, PyObject *v)
{
    PyObject *old = fl_slot(obj, off);
    Py_INCREF(v);
    fl_slot(obj, off) = v;
    Py_XDECREF(old);
}

static inline PyObject *fl_slot_get(PyObject *obj, Py_ssize_t off)
{
    PyObject *v = fl_slot(obj, off);
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a slot of the handle was deleted");
        return NULL;
    }
    Py_INCREF(v);
    return v;
}

/* What CPython's generic deallocator for Python classes (subtype_dealloc) does for
 * this one, which has no __del__, no __dict__ and object as its only base written in
 * C: about a quarter of the instructions, as it need not walk the bases for their
 * slots and deallocators. One class per process uses it. */
#define FL_DEALLOC_MAX_SLOTS 8
#ifdef Py_TPFLAGS_MANAGED_DICT  /* 3.11+: a __dict__ kept before the object */
#  define fl_managed_dict(type) ((type)->tp_flags & Py_TPFLAGS_MANAGED_DICT)
#else
#  define fl_managed_dict(type) 0
#endif
static Py_ssize_t fl_dealloc_offsets[FL_DEALLOC_MAX_SLOTS];
static int fl_dealloc_count;

static void fl_slots_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    int i;
    PyObject_GC_UnTrack(self);
    if (fl_has_weakrefs(self))
        PyObject_ClearWeakRefs(self);
    for (i = 0; i < fl_dealloc_count; i++)
        Py_CLEAR(fl_slot(self, fl_dealloc_offsets[i]));
    type->tp_free(self);
    Py_DECREF(type);  /* an instance of a Python class holds a reference to it */
}

static int fl_use_slots_dealloc(PyObject *type_obj, const Py_ssize_t *offsets, int n)
{
    PyTypeObject *type = (PyTypeObject *)type_obj, *base;
    int i;
    if (n > FL_DEALLOC_MAX_SLOTS || type->tp_finalize || type->tp_del
            || type->tp_dictoffset || fl_managed_dict(type)
            || type->tp_free != PyObject_GC_Del)
        return 0;
    /* Every base but object is a Python class with __slots__ (those n, and
     * __weakref__), freed by subtype_dealloc down to object's deallocator. */
    for (base = type; base != &PyBaseObject_Type; base = base->tp_base) {
        if (base == NULL || !(base->tp_flags & Py_TPFLAGS_HEAPTYPE)
                || base->tp_dealloc != type->tp_dealloc)
            return 0;
    }
    for (i = 0; i < n; i++)
        fl_dealloc_offsets[i] = offsets[i];
    fl_dealloc_count = n;
    type->tp_dealloc = fl_slots_dealloc;
    return 1;
}

#endif /* FASTLOOP_SLOTS_H */
