"""swsctl delete: ask the agent to remove services (and with --purge their volumes)."""

from __future__ import annotations

import sys

import click

from sws.errors import NotFound
from swsctl import wait
from swsctl.state import State, pass_state

DEFAULT_WAIT_TIMEOUT_S = 300.0


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--purge", is_flag=True, help="Also remove each service's persistent volume.")
@click.option("--wait", "wait_", is_flag=True, help="Block until the services are gone.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_TIMEOUT_S,
    show_default=True,
    help="Seconds --wait waits.",
)
@pass_state
def delete(state: State, names: tuple[str, ...], purge: bool, wait_: bool, timeout: float) -> None:
    """Delete the services NAMES."""
    client = state.client()
    accepted: list[str] = []
    failures = 0
    for name in dict.fromkeys(names):
        try:
            client.delete(name, purge=purge)
        except NotFound as e:
            click.echo(f"error: {e.message}", err=True)
            failures += 1
            continue
        click.echo(f"{name} deleting" + (" (volume too)" if purge else ""))
        accepted.append(name)
    if wait_ and accepted:
        for problem in wait.until_gone(client.get_service, accepted, timeout):
            click.echo(f"error: {problem}", err=True)
            failures += 1
    if failures:
        sys.exit(1)
