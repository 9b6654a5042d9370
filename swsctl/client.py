"""The one client of the SWS API that every swsctl command goes through.

Every failure comes out as an SwsError whose message is the line to print: an unreachable API
names its URL, a rejected token says how to fix it, and the server's own errors keep their
message and field details.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sws.errors import FieldError, NotFound, SwsError, Unauthorized, Unavailable

DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "swsctl/1"

# A kept-alive connection may be closed by the platform (a proxy draining for a route swap)
# just as the next request goes out on it. Send such a request again on a new connection, as
# HTTP clients may for idempotent methods (RFC 9110 9.2.2): GET, and this API's PUT (the same
# spec twice is "unchanged") and DELETE. Error statuses are answers, never retried.
_RETRY = Retry(
    total=2,
    connect=2,
    read=2,
    status=0,
    other=0,
    allowed_methods=frozenset({"GET", "PUT", "DELETE"}),
    backoff_factor=0.05,
    raise_on_status=False,
)


class ApiError(SwsError):
    """The API refused a request; carries its status and any per-field details."""

    def __init__(self, status: int, message: str, details: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class ApiClient:
    def __init__(
        self,
        host: str,
        token: str,
        *,
        api_domain: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = host.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=_RETRY)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        if api_domain:
            # On the platform the API sits behind the load balancer, routed by Host like
            # every service.
            self._session.headers["Host"] = api_domain

    # -- the API -----------------------------------------------------------------------------

    def list_services(self, *, all_users: bool = False) -> list[dict[str, Any]]:
        body = self._request("GET", "/v1/services", params={"all": "1"} if all_users else None)
        services: list[dict[str, Any]] = body["services"]
        return services

    def get_service(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/services/{quote(name, safe='')}")

    def apply(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return self._request("PUT", f"/v1/services/{quote(name, safe='')}", json=document)

    def delete(self, name: str, *, purge: bool = False) -> dict[str, Any]:
        params = {"purge": "1"} if purge else None
        return self._request("DELETE", f"/v1/services/{quote(name, safe='')}", params=params)

    def platform(self) -> dict[str, Any]:
        return self._request("GET", "/v1/platform")

    def close(self) -> None:
        self._session.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: object = None,
    ) -> dict[str, Any]:
        url = self.host + path
        try:
            response = self._session.request(
                method, url, params=params, json=json, timeout=self._timeout
            )
        except requests.Timeout:
            raise Unavailable(
                f"the API at {self.host} did not answer within {self._timeout:g}s"
            ) from None
        except requests.ConnectionError as e:
            raise Unavailable(f"cannot reach the API at {self.host}: {_reason(e)}") from None
        except requests.RequestException as e:
            raise Unavailable(f"cannot reach the API at {self.host}: {_reason(e)}") from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SwsError(
                f"the API at {self.host} answered {response.status_code} without a JSON "
                "object: is it the SWS API (and the right --api-domain)?"
            )
        return body

    def _error(self, response: requests.Response) -> SwsError:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = body.get("error") if isinstance(body, dict) else None
        status = response.status_code
        if status == 401:
            return Unauthorized(
                f"the API at {self.host} rejected the token; run `swsctl configure`"
            )
        if not isinstance(message, str):
            return ApiError(status, f"the API at {self.host} answered {status} {response.reason}")
        if status == 404:
            return NotFound(message)
        if status == 503:
            return Unavailable(f"the API at {self.host} is unavailable: {message}")
        details = body.get("details") if isinstance(body, dict) else None
        fields = tuple(
            FieldError(str(d.get("field", "")), str(d.get("message", "")))
            for d in (details if isinstance(details, list) else [])
            if isinstance(d, dict)
        )
        return ApiError(status, message, fields)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _reason(e: requests.RequestException) -> str:
    """The useful end of requests' nested error text, e.g. "Connection refused"."""
    text = str(e)
    found = _ERRNO.findall(text)
    if found:
        return str(found[-1]).strip()
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return type(e).__name__
