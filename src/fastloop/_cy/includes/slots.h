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
 */
#ifndef FASTLOOP_SLOTS_H
#define FASTLOOP_SLOTS_H

#include <Python.h>
#include <structmember.h>

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

#endif /* FASTLOOP_SLOTS_H */
