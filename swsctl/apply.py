"""swsctl apply: validate every file locally, then apply each service in them.

Validation runs the same spec code as the apiserver and reports every error of every file
before anything is sent: a batch with one bad file changes nothing.
"""

from __future__ import annotations

import sys

import click

from sws.errors import FieldError, SpecError, SwsError
from sws.spec import ServiceSpec, parse_specs
from swsctl import wait
from swsctl.client import ApiError
from swsctl.state import State, pass_state

DEFAULT_WAIT_TIMEOUT_S = 300.0


class InvalidFiles(SwsError):
    status = 400


def load_specs(paths: tuple[str, ...]) -> list[ServiceSpec]:
    """Every spec in `paths`, or print every error (file: field: message) and raise."""
    specs: list[ServiceSpec] = []
    where: dict[str, str] = {}
    failed: dict[str, list[FieldError]] = {}
    for path in paths:
        source = "<stdin>" if path == "-" else path
        try:
            with click.open_file(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            failed.setdefault(source, []).append(FieldError("", f"cannot read: {e}"))
            continue
        try:
            found = parse_specs(text, source)
        except SpecError as e:
            failed.setdefault(source, []).extend(e.errors)
            continue
        for spec in found:
            if spec.name in where:
                failed.setdefault(source, []).append(
                    FieldError("spec.name", f'"{spec.name}" is also declared in {where[spec.name]}')
                )
            else:
                where[spec.name] = source
                specs.append(spec)
    if failed:
        count = sum(len(errors) for errors in failed.values())
        for source, errors in failed.items():
            for error in errors:
                click.echo(f"{source}: {error}", err=True)
        files = "file" if len(failed) == 1 else "files"
        raise InvalidFiles(f"{count} errors in {len(failed)} {files}; nothing applied")
    return specs


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--wait", "wait_", is_flag=True, help="Block until every service runs or fails.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_TIMEOUT_S,
    show_default=True,
    help="Seconds --wait waits.",
)
@pass_state
def apply(state: State, files: tuple[str, ...], wait_: bool, timeout: float) -> None:
    """Create or update the services declared in FILES (YAML or JSON; - reads stdin)."""
    specs = load_specs(files)
    client = state.client()
    generations: dict[str, int] = {}
    failures = 0
    for spec in specs:
        try:
            body = client.apply(spec.name, spec.to_document())
        except ApiError as e:
            # One refused service (a taken name, say) does not stop the others.
            click.echo(f"error: {spec.name}: {e.message}", err=True)
            for detail in e.details:
                click.echo(f"  {detail}", err=True)
            failures += 1
            continue
        click.echo(f"{spec.name} {body.get('result', 'applied')}")
        generations[spec.name] = int(body.get("generation", 0))
    if wait_ and generations:
        problems = wait.until_rolled_out(client.get_service, generations, timeout)
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        failures += len(problems)
    if failures:
        sys.exit(1)
