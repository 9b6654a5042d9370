"""swsctl configure: ask for (or take) the API URL and token, check them, save them."""

from __future__ import annotations

import click

from sws.errors import InvalidInput
from swsctl import config
from swsctl.client import ApiClient
from swsctl.state import State, pass_state


@click.command()
@click.option("--host", "host_flag", help="API URL, e.g. http://localhost.")
@click.option("--token", "token_flag", help="Bearer token, as printed by create-user.")
@click.option("--api-domain", "domain_flag", help="The API's domain behind the load balancer.")
@pass_state
def configure(
    state: State, host_flag: str | None, token_flag: str | None, domain_flag: str | None
) -> None:
    """Save the API URL and token after checking them against the API."""
    path = config.config_path()
    saved = config.load(path)
    given = state.given()
    host = host_flag or given.host
    token = token_flag or given.token
    api_domain = domain_flag if domain_flag is not None else given.api_domain
    interactive = host is None or token is None

    if host is None:
        host = click.prompt("API URL", default=saved.host or "http://localhost")
    try:
        host = config.check_host(str(host))
    except InvalidInput as e:
        raise click.BadParameter(e.message, param_hint="--host") from None
    if token is None:
        if saved.token:
            token = click.prompt(
                "API token (empty keeps the saved one)",
                default="",
                hide_input=True,
                show_default=False,
            )
            token = token or saved.token
        else:
            token = click.prompt("API token", hide_input=True)
    if api_domain is None and interactive:
        api_domain = click.prompt(
            "API domain sent as Host (empty for none)",
            default=saved.api_domain or "",
            show_default=bool(saved.api_domain),
        )
    elif api_domain is None:
        api_domain = saved.api_domain

    settings = config.Settings(host=host, token=str(token), api_domain=api_domain or None)
    client = ApiClient(host, settings.token or "", api_domain=settings.api_domain)
    try:
        services = client.list_services()
    finally:
        client.close()
    config.save(path, settings)
    click.echo(f"saved to {path} (the API at {host} answers; you have {len(services)} services)")
