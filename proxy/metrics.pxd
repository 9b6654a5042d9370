# Types for proxy/metrics.py when it is compiled (see setup.py and proxy/protocol.pxd).
cimport cython


@cython.final
cdef class _Counts:
    cdef public list classes
    cdef public list latency
    cdef public double seconds


@cython.final
cdef class Metrics:
    cdef public dict services

    @cython.locals(counts=_Counts, i=Py_ssize_t, n=Py_ssize_t, buckets=tuple)
    cpdef observe(self, service, int status, double seconds)
