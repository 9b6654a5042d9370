# Types for proxy/protocol.py when it is compiled (see setup.py): the module stays plain
# Python, and this file makes its classes extension types whose fields are C struct members,
# so the per-request path reads and writes them without dictionary or descriptor lookups.
cimport cython
from proxy.compiled cimport span
from proxy.server cimport Server
from proxy.upstream cimport Backend, UpstreamConnection

cdef int K_NONE, K_IDLE, K_HEAD, K_BODY, K_LINGER
cdef int R_UPSTREAM, R_BUFFER, R_STOP
cdef int BODY_NONE, BODY_LENGTH, BODY_CHUNKED
cdef Py_ssize_t _PIPELINE_LIMIT
cdef frozenset _HOST, _CONNECTION_KEYWORDS
cdef bytes _NAME_CHARS, _TARGET_CHARS, _VALUE_CHARS
cdef tuple _SPECIALS


@cython.locals(n=Py_ssize_t, j=Py_ssize_t)
cdef bint _same_lower(bytes data, Py_ssize_t start, Py_ssize_t end, bytes lower) except -1

@cython.locals(n=Py_ssize_t, name=bytes)
cdef bytes _special(bytes data, Py_ssize_t start, Py_ssize_t end)


@cython.final
cdef class Exchange:
    cdef public int attempts
    cdef public Backend backend
    cdef public tuple backends
    cdef public object bad
    cdef public int body
    cdef public long long bytes_out
    cdef public object cl_field
    cdef public ClientConnection client
    cdef public bint close_after
    cdef public bint complete
    cdef public object conn_field
    cdef public bint done
    cdef public object error
    cdef public bint expect
    cdef public object fail_message
    cdef public int fail_status
    cdef public bint framed
    cdef public bint fresh
    cdef public bytes head
    cdef public Py_ssize_t head_size
    cdef public bytes host
    cdef public object host_field
    cdef public bint http10
    cdef public bint is_head
    cdef public bint keep_alive
    cdef public list lines
    cdef public bytes method
    cdef public list pending
    cdef public long long pending_bytes
    cdef public bint replayable
    cdef public bytes request_id
    cdef public bint response_started
    cdef public object rid_field
    cdef public object service
    cdef public double start
    cdef public int status
    cdef public object te_field
    cdef public object tried
    cdef public object tunnel_data
    cdef public bint upgrade
    cdef public object upgrade_field
    cdef public UpstreamConnection upstream
    cdef public bytes url
    cdef public object xff_field


@cython.locals(cl=object, te=object, conn=object, xff=object)
cdef bint _note_field(Exchange ex, bytes lname, bytes value) except -1

@cython.locals(te=object, cl=object)
cdef tuple _framing(Exchange ex)

@cython.final
cdef class ClientConnection:
    cdef public int fd
    cdef public Server server
    cdef public object parser
    cdef public object transport
    cdef public bytes peer
    cdef public bytes forwarded
    cdef public bytes forwarded_for
    cdef public Exchange cur
    cdef public Exchange active
    cdef public list queue
    cdef public int read_block
    cdef public bint write_paused
    cdef public bint closed
    cdef public bint closing
    cdef public bint eof
    cdef public bint stopped
    cdef public Exchange upgrading
    cdef public UpstreamConnection tunnel
    cdef public int kind
    cdef public double deadline
    cdef public Py_ssize_t head_raw
    cdef public bint _starting
    cdef public bint in_message
    cdef public bint fast_heads

    @cython.locals(n=Py_ssize_t, p=Py_ssize_t, i=Py_ssize_t, u=Py_ssize_t,
                   url_end=Py_ssize_t, a=Py_ssize_t, name_end=Py_ssize_t, v=Py_ssize_t,
                   value_end=Py_ssize_t, cut=Py_ssize_t, cut_end=Py_ssize_t, end=Py_ssize_t,
                   max_head=Py_ssize_t, max_url=Py_ssize_t, method=bytes, lname=bytes,
                   host=object, ex=Exchange, lines=list, server=Server)
    cpdef Py_ssize_t _simple_heads(self, bytes data) except -1

    @cython.locals(rid=object, xff=object, head=bytes, server=Server, count=cython.longlong)
    cpdef _head_done(self, Exchange ex, list lines, bytes host)

    @cython.locals(kind=int, now=double, active=Exchange, taken=Py_ssize_t)
    cpdef data_received(self, bytes data)

    @cython.locals(ex=Exchange, size=Py_ssize_t)
    cpdef on_header(self, bytes name, bytes value)

    @cython.locals(ex=Exchange, framing=tuple, lines=list, rid=object, xff=object, conn=object,
                   upgrade=object, url=bytes, host=object, keep_alive=bint)
    cpdef on_headers_complete(self)

    @cython.locals(ex=Exchange)
    cpdef on_url(self, bytes url)

    @cython.locals(ex=Exchange)
    cpdef on_body(self, bytes body)

    @cython.locals(ex=Exchange)
    cpdef on_message_complete(self)

    @cython.locals(active=Exchange, upstream=UpstreamConnection, held=Py_ssize_t)
    cpdef _advance(self)

    @cython.locals(ex=Exchange, held=Py_ssize_t)
    cpdef Py_ssize_t _held(self) except -1

    @cython.locals(ex=Exchange, found=object)
    cpdef _next(self)

    @cython.locals(backend=Backend, backends=tuple, idle=list, conn=UpstreamConnection)
    cpdef _dispatch(self, Exchange ex)

    cpdef connected(self, Exchange ex, UpstreamConnection conn)
    cpdef connect_failed(self, Exchange ex, Backend backend, int status, str message)
    cpdef redispatch(self, Exchange ex)

    @cython.locals(keep=bint)
    cpdef respond_local(self, Exchange ex, int status, str message)

    cpdef response_done(self, Exchange ex)
    cpdef abort(self, Exchange ex, int status)
    cpdef _refuse(self, refusal)
    cpdef _shutdown(self)
    cpdef block(self, int reason)
    cpdef unblock(self, int reason)

@cython.locals(only=Backend, backend=Backend, least=int, n=int, tied=list, allow_failed=bint)
cpdef Backend pick(tuple backends, tried, long long turn, double now)
