# Types for proxy/server.py when it is compiled (see setup.py and proxy/protocol.pxd): the
# fields the per-request path reads (now, draining, the host cache, the counters) become C
# struct members.
cimport cython
from proxy.metrics cimport Metrics
from proxy.protocol cimport Exchange
from proxy.upstream cimport Backend

cdef Py_ssize_t _HOST_CACHE_LIMIT


cdef class Server:
    cdef public object config
    cdef public double body_timeout
    cdef public Py_ssize_t buffer_limit
    cdef public double fail_timeout
    cdef public double header_timeout
    cdef public double keepalive_timeout
    cdef public double linger_timeout
    cdef public Py_ssize_t max_header_bytes
    cdef public Py_ssize_t max_url_bytes
    cdef public double upstream_timeout
    cdef public double upstream_idle_timeout
    cdef public Py_ssize_t upstream_max_idle
    cdef public object _with_admin
    cdef public object _reuse_port
    cdef public object loop
    cdef public object clock
    cdef public double now
    cdef public object table
    cdef public dict backends
    cdef public dict _service_backends
    cdef public dict _host_cache
    cdef public set clients
    cdef public set upstreams
    cdef public bint draining
    cdef public bint stopping
    cdef public bint shutting_down
    cdef public bint routes_loaded
    cdef public object _idle_close
    cdef public Metrics metrics
    cdef public object access_log
    cdef public long long turn
    cdef public long long retried
    cdef public bytes rid_prefix
    cdef public long long rid_counter
    cdef public object _listener
    cdef public object _admin
    cdef public object _stopped
    cdef public object _tick_handle
    cdef public object _shutdown_task
    cdef public object started
    cdef public object listen_port
    cdef public object admin_port

    @cython.locals(cache=dict)
    cpdef route(self, bytes host)

    @cython.locals(duration=double)
    cpdef finished(self, Exchange ex, int status)

    cpdef connect(self, Backend backend, Exchange ex)
