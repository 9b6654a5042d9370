# Types for proxy/compiled.py when it is compiled (see setup.py): span and write are C
# functions that protocol and upstream cimport, so calling them costs a C call.
cimport cython

cdef extern from "sys/socket.h" nogil:
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_DONTWAIT
    int MSG_NOSIGNAL

cdef bint _COMPILED

cpdef bytes span(bytes data, Py_ssize_t start, Py_ssize_t end)

@cython.locals(size=Py_ssize_t, sent=Py_ssize_t)
cpdef write(object transport, int fd, bytes data)
