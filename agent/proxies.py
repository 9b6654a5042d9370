"""Keep the proxies on the latest route table.

Level-based like the rest of the agent: after a new table is published, and again every
interval (so a proxy that restarted with an old or empty table is caught up), each proxy's
admin API is asked which version it runs (`GET /routes`) and, if that is not the latest,
sent the table (`PUT /routes`). Proxies are done one at a time, in the configured order; a
proxy that fails is recorded as `failed` in confdb and does not hold the others back.

This runs on an agent worker thread, never inside a pass: a proxy that does not answer
costs that worker its timeout, not the reconciler its loop. The rolling swap with the front
balancer (take a proxy out of rotation, update it, put it back) builds on this.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from agent.config import ProxyEndpoint
from confdb import routes
from confdb.db import connect
from sws.route_table import RouteTable

log = logging.getLogger("sws.agent")


class ProxySync:
    """Bring each configured proxy up to a given route table."""

    def __init__(
        self, endpoints: tuple[ProxyEndpoint, ...], database_url: str, timeout: float = 2.0
    ) -> None:
        self.endpoints = endpoints
        self.database_url = database_url
        self.timeout = timeout
        self._session = requests.Session()
        # What was last recorded in confdb per proxy, so unchanged states are not rewritten.
        self._recorded: dict[str, tuple[int, str, str]] = {}

    def close(self) -> None:
        self._session.close()

    def sync(self, table: RouteTable) -> dict[str, tuple[int, str, str]]:
        """Push `table` where it is missing; return {proxy: (version, state, message)}."""
        body = json.dumps(table.to_json_obj()).encode()
        results: dict[str, tuple[int, str, str]] = {}
        for endpoint in self.endpoints:
            results[endpoint.name] = self._sync_one(endpoint, table, body)
        changed = {k: v for k, v in results.items() if self._recorded.get(k) != v}
        if changed:
            try:
                with connect(self.database_url) as conn:
                    for name, (version, state, message) in changed.items():
                        routes.record_proxy(conn, name, version, state, message)
                self._recorded.update(changed)
            except Exception as e:
                log.warning("proxies.record_failed error=%s", json.dumps(str(e)))
        return results

    def _sync_one(
        self, endpoint: ProxyEndpoint, table: RouteTable, body: bytes
    ) -> tuple[int, str, str]:
        url = f"{endpoint.admin_url}/routes"
        try:
            current: Any = self._session.get(url, timeout=self.timeout).json()
            running = int(current.get("version", -1)) if isinstance(current, dict) else -1
            if running == table.version:
                return table.version, "serving", ""
            response = self._session.put(
                url, data=body, headers={"Content-Type": "application/json"}, timeout=self.timeout
            )
            if response.status_code != 200:
                message = f"PUT /routes answered {response.status_code}: {response.text[:200]}"
                log.warning(
                    "proxy.rejected proxy=%s version=%d status=%d",
                    endpoint.name,
                    table.version,
                    response.status_code,
                )
                return running, "failed", message
        except (requests.RequestException, ValueError) as e:
            log.warning(
                "proxy.unreachable proxy=%s error=%s", endpoint.name, json.dumps(type(e).__name__)
            )
            return 0, "failed", f"unreachable: {type(e).__name__}"
        log.info("proxy.updated proxy=%s version=%d", endpoint.name, table.version)
        return table.version, "serving", ""
