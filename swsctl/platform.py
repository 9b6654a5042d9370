"""swsctl platform: the route table version each proxy runs (admins only)."""

from __future__ import annotations

import click

from swsctl import output
from swsctl.state import State, pass_state


@click.command()
@click.option("-o", "--output", "fmt", type=click.Choice(output.FORMATS), default="table")
@pass_state
def platform(state: State, fmt: str) -> None:
    """Show the newest route table version and each proxy's version and state."""
    view = state.client().platform()
    if fmt == "json":
        click.echo(output.as_json(view))
        return
    if fmt == "yaml":
        click.echo(output.as_yaml(view))
        return
    click.echo(f"Route version: {view.get('routeVersion')}")
    rows = [
        [
            p.get("name"),
            p.get("routeVersion"),
            p.get("state"),
            output.age(p.get("updatedAt")),
            p.get("message") or "",
        ]
        for p in view.get("proxies") or []
    ]
    if rows:
        click.echo(output.table(["PROXY", "ROUTE VERSION", "STATE", "UPDATED", "MESSAGE"], rows))
    else:
        click.echo("no proxies reported yet")
