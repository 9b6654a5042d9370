"""What every command shares: settings from flags, environment and file, and the client."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from sws.errors import InvalidInput
from swsctl import config
from swsctl.client import ApiClient


@dataclass
class State:
    host: str | None = None
    token: str | None = None
    api_domain: str | None = None
    _client: ApiClient | None = field(default=None, repr=False)

    def given(self) -> config.Settings:
        """What flags and environment variables say."""
        return config.Settings(self.host, self.token, self.api_domain)

    def settings(self) -> config.Settings:
        return self.given().over(config.load(config.config_path()))

    def client(self) -> ApiClient:
        """The API client; checks the settings first, so a bad one costs no request."""
        if self._client is None:
            s = self.settings()
            if not s.host or not s.token:
                missing = "API URL" if not s.host else "token"
                raise click.UsageError(
                    f"no {missing} configured: run `swsctl configure`, "
                    "or pass --host/--token (SWS_HOST/SWS_TOKEN)"
                )
            try:
                host = config.check_host(s.host)
            except InvalidInput as e:
                raise click.UsageError(e.message) from None
            self._client = ApiClient(host, s.token, api_domain=s.api_domain)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_state = click.make_pass_decorator(State)
