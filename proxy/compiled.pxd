# Types for proxy/compiled.py when it is compiled (see setup.py): span is a C function that
# protocol and upstream cimport, so calling it costs a C call.
cdef bint _COMPILED

cpdef bytes span(bytes data, Py_ssize_t start, Py_ssize_t end)
