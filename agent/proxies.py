"""The admin APIs the rolling swap drives: each proxy's, and the front balancer's.

One small client per outside system; transport errors become `Unavailable`, and an answer
other than 200 becomes `Refused` carrying the status and the error the server gave, so the
swap sees only our errors. Both admin APIs close the connection after each answer, so a
plain session without pooling concerns is enough; each client belongs to one thread.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from agent.config import ProxyEndpoint
from sws.errors import SwsError, Unavailable
from sws.route_table import RouteTable
from sws.swap import BalancerView


class Refused(SwsError):
    """An admin API answered, but not with 200 (e.g. a route table it will not take)."""

    status = 502

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def _error_text(response: requests.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:200]
    return response.text[:200].strip()


class _Admin:
    def __init__(self, base_url: str, what: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.what = what
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self._session.request(
                method, self.base_url + path, data=body, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as e:
            raise Unavailable(f"{self.what}: {method} {path}: {_transport_error(e)}") from None
        if response.status_code != 200:
            raise Refused(
                f"{self.what}: {method} {path} answered {response.status_code}: "
                f"{_error_text(response)}",
                response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise Unavailable(f"{self.what}: {method} {path}: answer is not JSON") from None


def _transport_error(e: requests.RequestException) -> str:
    if isinstance(e, requests.Timeout):
        return "timed out"
    if isinstance(e, requests.ConnectionError):
        return "connection failed"
    return type(e).__name__


class ProxyAdmin(_Admin):
    """One proxy's admin API: health, route table, drain and resume."""

    def __init__(self, endpoint: ProxyEndpoint, timeout: float = 2.0) -> None:
        super().__init__(endpoint.admin_url, endpoint.name, timeout)
        self.name = endpoint.name

    def health(self) -> tuple[int, bool, int]:
        """(route version, draining, open connections) from GET /healthz."""
        body = self._call("GET", "/healthz")
        try:
            return (
                int(body["version"]),
                body.get("status") == "draining",
                int(body.get("connections", 0)),
            )
        except (KeyError, TypeError, ValueError):
            raise Unavailable(f"{self.name}: GET /healthz: unexpected answer") from None

    def put_routes(self, table: RouteTable) -> None:
        self._call("PUT", "/routes", json.dumps(table.to_json_obj()).encode())

    def drain(self) -> None:
        self._call("POST", "/drain", b"")

    def resume(self) -> None:
        self._call("POST", "/resume", b"")


class BalancerAdmin(_Admin):
    """The front balancer's admin API: its view of each proxy, drain and enable."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        super().__init__(base_url, "balancer", timeout)

    def backends(self) -> dict[str, BalancerView]:
        body = self._call("GET", "/backends")
        try:
            return {str(b["name"]): _view(b) for b in body["backends"]}
        except (KeyError, TypeError, ValueError):
            raise Unavailable("balancer: GET /backends: unexpected answer") from None

    def backend(self, name: str) -> BalancerView:
        return self._backend_call("GET", f"/backends/{name}")

    def drain(self, name: str, force: bool = False) -> BalancerView:
        """Stop new connections to `name`; without `force` the balancer refuses (409) to
        drain the last backend that can take connections."""
        query = "?force=true" if force else ""
        return self._backend_call("POST", f"/backends/{name}/drain{query}")

    def enable(self, name: str) -> BalancerView:
        return self._backend_call("POST", f"/backends/{name}/enable")

    def _backend_call(self, method: str, path: str) -> BalancerView:
        body = self._call(method, path, b"" if method == "POST" else None)
        try:
            return _view(body)
        except (KeyError, TypeError, ValueError):
            raise Unavailable(f"balancer: {method} {path}: unexpected answer") from None


def _view(b: Any) -> BalancerView:
    return BalancerView(
        enabled=b["state"] == "enabled",
        health=str(b["health"]),
        connections=int(b.get("open_connections", 0)),
        error=str(b.get("last_check_error") or ""),
    )
