"""swsctl ls: the caller's services (every user's with --all, for admins)."""

from __future__ import annotations

from typing import Any

import click

from swsctl import output
from swsctl.state import State, pass_state


def _ready(service: dict[str, Any]) -> str:
    replicas = service.get("replicas") or {}
    return f"{replicas.get('ready', 0)}/{replicas.get('desired', 0)}"


@click.command()
@click.option("-o", "--output", "fmt", type=click.Choice(output.FORMATS), default="table")
@click.option("--all", "all_users", is_flag=True, help="Every user's services (admins only).")
@pass_state
def ls(state: State, fmt: str, all_users: bool) -> None:
    """List services: NAME DOMAIN IMAGE READY STATUS AGE."""
    services = state.client().list_services(all_users=all_users)
    if fmt == "json":
        click.echo(output.as_json(services))
        return
    if fmt == "yaml":
        click.echo(output.as_yaml(services))
        return
    headers = ["NAME", "DOMAIN", "IMAGE", "READY", "STATUS", "AGE"]
    rows = [
        [s["name"], s["domain"], s["image"], _ready(s), s["state"], output.age(s.get("createdAt"))]
        for s in services
    ]
    if all_users:
        headers.insert(1, "OWNER")
        for row, s in zip(rows, services, strict=True):
            row.insert(1, s.get("owner", ""))
    if not rows:
        click.echo("no services", err=True)
        return
    click.echo(output.table(headers, rows))
