# Types for proxy/upstream.py when it is compiled (see setup.py and proxy/protocol.pxd).
cimport cython
from proxy.compiled cimport span, write
from proxy.protocol cimport ClientConnection, Exchange
from proxy.server cimport Server


@cython.final
cdef class ResponseHead:
    cdef public bint backend_keep_alive
    cdef public bint chunked
    cdef public bytes close_head
    cdef public bint has_length
    cdef public bytes keep_alive_head
    cdef public Py_ssize_t length
    cdef public bytes prefix
    cdef public int status
    cdef public object upgrade
    cdef public bint whole


@cython.final
cdef class Backend:
    cdef public object addr
    cdef public int connections
    cdef public double failed_until
    cdef public dict heads
    cdef public object host
    cdef public list idle
    cdef public int inflight
    cdef public object port
    cdef public bint retired


@cython.final
cdef class UpstreamConnection:
    cdef public int fd
    cdef public Server server
    cdef public Backend backend
    cdef public object transport
    cdef public object parser
    cdef public Exchange exchange
    cdef public bytes raw
    cdef public list out
    cdef public bint closed
    cdef public bint reused
    cdef public double deadline
    cdef public bint idle
    cdef public bint read_paused
    cdef public bint write_paused
    cdef public ClientConnection tunnel
    cdef public bint done
    cdef public bint interim
    cdef public bint upgraded
    cdef public bint chunked_out
    cdef public bint close_delimited
    cdef public bint got_bytes
    cdef public bint head_sent
    cdef public bint head_only
    cdef public bint keep_alive
    cdef public bint continued
    cdef public bytes last_raw
    cdef public ResponseHead last_head

    @cython.locals(ex=Exchange, head=ResponseHead, end=Py_ssize_t, out=list, last=bytes)
    cpdef data_received(self, bytes data)

    @cython.locals(client=ClientConnection)
    cpdef _flush(self, list out, Exchange ex)

    @cython.locals(ex=Exchange, head=ResponseHead, out=list, keep=bint, status=int, end=Py_ssize_t)
    cpdef on_headers_complete(self)

    @cython.locals(keep=bint, client=ClientConnection)
    cpdef _whole(self, Exchange ex, ResponseHead head, bytes data, Py_ssize_t start)

    @cython.locals(ex=Exchange)
    cpdef on_body(self, bytes body)

    cpdef on_message_complete(self)

    cdef void _reset(self)

    cpdef carry(self, Exchange ex)

    @cython.locals(pending=list)
    cpdef send(self, Exchange ex)

    @cython.locals(ex=Exchange)
    cpdef _detach(self)

    @cython.locals(ex=Exchange, backend=Backend, client=ClientConnection)
    cpdef _finish(self)

    @cython.locals(backend=Backend)
    cpdef release(self)

    cpdef fail(self, int status, str message)
    cpdef abort(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
