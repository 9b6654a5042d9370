"""swsctl status: one service's spec, replicas and recent events."""

from __future__ import annotations

from typing import Any

import click

from swsctl import output
from swsctl.state import State, pass_state


@click.command()
@click.argument("name")
@click.option("-o", "--output", "fmt", type=click.Choice(output.FORMATS), default="table")
@pass_state
def status(state: State, name: str, fmt: str) -> None:
    """Show the service NAME: spec, state, instances and recent events."""
    service = state.client().get_service(name)
    if fmt == "json":
        click.echo(output.as_json(service))
    elif fmt == "yaml":
        click.echo(output.as_yaml(service))
    else:
        click.echo(describe(service))


def describe(service: dict[str, Any]) -> str:
    """The service for a person; env values are left out (-o json/yaml shows them)."""
    spec = (service.get("spec") or {}).get("spec") or {}
    replicas = service.get("replicas") or {}
    env_names = ", ".join(e.get("name", "") for e in spec.get("env") or []) or "-"
    state = service.get("state", "")
    if service.get("message"):
        state += f" ({service['message']})"
    fields = [
        ("Name", service.get("name")),
        ("Owner", service.get("owner")),
        ("Domain", spec.get("domain")),
        ("Image", spec.get("image")),
        ("Port", spec.get("port")),
        ("Volume", spec.get("volumeMount") or "-"),
        ("Env", env_names),
        ("Replicas", f"{replicas.get('ready', 0)}/{replicas.get('desired', 0)} ready"),
        ("State", state),
        (
            "Generation",
            f"{service.get('generation')} (observed {service.get('observedGeneration')})",
        ),
        ("Created", f"{service.get('createdAt')} ({output.age(service.get('createdAt'))} ago)"),
    ]
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]

    instances = service.get("instances") or []
    lines += ["", "Instances:"]
    if instances:
        rows = [
            [
                i.get("name"),
                i.get("address") or "-",
                "yes" if i.get("ready") else "no",
                i.get("state"),
            ]
            for i in instances
        ]
        lines.append(_indent(output.table(["NAME", "ADDRESS", "READY", "STATE"], rows)))
    else:
        lines.append("  none")

    events = service.get("events") or []
    lines += ["", "Events:"]
    if events:
        rows = [
            [output.age(e.get("at")), e.get("type"), e.get("reason"), e.get("message")]
            for e in events
        ]
        lines.append(_indent(output.table(["AGE", "TYPE", "REASON", "MESSAGE"], rows)))
    else:
        lines.append("  none")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
