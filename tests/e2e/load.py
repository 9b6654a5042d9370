"""A steady HTTP client load against one service, counting every failed request.

Several threads each keep one HTTP/1.1 keep-alive connection to the balancer on 127.0.0.1
and send `GET path` with the service's Host header, one request after another. A request
fails when it gets no complete answer (connection refused or reset, timeout) or a status
other than 2xx.

One case is not a failure, because every HTTP client retries it (RFC 9112, section 9.3.1:
a request on a reused connection that closed before any byte of the response came back
may be retried when it is idempotent): the server closed an idle keep-alive connection just
as the next request went out on it. Such a GET is sent again once, on a new connection,
and counted in `retried`; if that fails too, it is a failure.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    failures: int
    retried: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.1f}s ({self.rate:.0f}/s), "
            f"{self.failures} failed, {self.retried} retried on a closed keep-alive connection; "
            f"statuses {dict(self.statuses)}; errors {dict(self.errors)}; "
            f"first failures {self.first_failures[:5]}"
        )


class _Closed(Exception):
    """The server closed a reused connection before sending any byte of the answer."""


class LoadGenerator:
    """`with LoadGenerator(...) as load: <act>; result = load.finish(min_requests)`."""

    def __init__(
        self,
        port: int,
        host_header: str,
        path: str = "/healthz",
        threads: int = 8,
        address: str = "127.0.0.1",
        timeout: float = 10.0,
        per_connection: int = 100,
    ) -> None:
        self.port = port
        self.address = address
        self.host_header = host_header
        self.path = path
        self.threads = threads
        self.timeout = timeout
        self.per_connection = per_connection
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._requests = 0
        self._failures = 0
        self._retried = 0
        self._statuses: Counter[int] = Counter()
        self._errors: Counter[str] = Counter()
        self._first_failures: list[str] = []
        self._started = 0.0

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 5)

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def start(self) -> None:
        self._started = time.monotonic()
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def finish(self, min_requests: int, deadline_s: float = 300.0) -> LoadResult:
        """Keep going until at least `min_requests` were sent, then stop and report."""
        deadline = time.monotonic() + deadline_s
        while self.requests < min_requests and time.monotonic() < deadline:
            self._stop.wait(0.05)
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 5)
        with self._lock:
            return LoadResult(
                requests=self._requests,
                failures=self._failures,
                retried=self._retried,
                seconds=time.monotonic() - self._started,
                statuses=Counter(self._statuses),
                errors=Counter(self._errors),
                first_failures=list(self._first_failures),
            )

    # -- the workers -----------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _once(self, conn: http.client.HTTPConnection, reused: bool) -> int:
        try:
            conn.request("GET", self.path, headers={"Host": self.host_header})
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
            # RemoteDisconnected: EOF where the status line should be; reset/broken pipe on
            # a reused connection: the close crossed our request on the wire.
            if reused:
                raise _Closed() from e
            raise
        response.read()
        if response.will_close:
            conn.close()
        return response.status

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        sent = 0
        while not self._stop.is_set():
            if conn is not None and sent >= self.per_connection:
                # Clients come and go: new connections keep the balancer's choice in play.
                conn.close()
                conn = None
            if conn is None or conn.sock is None:
                sent = 0
            sent += 1
            reused = conn is not None and conn.sock is not None
            status: int | None = None
            error = ""
            retried = False
            try:
                if conn is None or conn.sock is None:
                    conn = self._connect()
                try:
                    status = self._once(conn, reused)
                except _Closed:
                    retried = True
                    conn.close()
                    conn = self._connect()
                    status = self._once(conn, False)
            except (OSError, http.client.HTTPException) as e:
                error = type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            failed = status is None or not 200 <= status < 300
            with self._lock:
                self._requests += 1
                self._retried += retried
                if status is not None:
                    self._statuses[status] += 1
                if error:
                    self._errors[error] += 1
                if failed:
                    self._failures += 1
                    if len(self._first_failures) < 20:
                        at = time.monotonic() - self._started
                        self._first_failures.append(f"t={at:.2f}s {status or error}")
        if conn is not None:
            conn.close()
