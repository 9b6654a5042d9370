"""sws-apiserver: serve the API (the default), migrate confdb, create users."""

from __future__ import annotations

import os
import sys

import click

from apiserver import logfmt
from apiserver.auth import new_token
from apiserver.config import Config
from apiserver.server import Server, wait_and_migrate
from confdb.db import connect, translate_errors
from confdb.users import create_user, replace_token
from sws.errors import Conflict, NotFound, SwsError
from sws.spec import normalize_domain

DEFAULT_WAIT_S = 60.0

_database_url = click.option(
    "--database-url",
    envvar="SWS_DATABASE_URL",
    required=True,
    show_envvar=True,
    help="confdb's PostgreSQL URL (prefer the environment variable: it holds a password).",
)
_wait = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds to wait for confdb to accept connections.",
)


class _ServeByDefault(click.Group):
    """`sws-apiserver` alone, or with only serve's options, means `sws-apiserver serve`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SwsError as e:
            click.echo(f"error: {e.message}", err=True)
            ctx.exit(1)


@click.group(cls=_ServeByDefault, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The SWS API server: the only writer of desired state in confdb."""


@main.command()
@_database_url
@click.option("--listen", envvar="SWS_LISTEN", default="0.0.0.0:8080", show_default=True)
@click.option(
    "--workers", envvar="SWS_WORKERS", type=click.IntRange(1, 64), default=2, show_default=True
)
@click.option(
    "--threads", envvar="SWS_THREADS", type=click.IntRange(1, 64), default=4, show_default=True
)
@click.option(
    "--log-level",
    envvar="SWS_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--startup-timeout",
    envvar="SWS_STARTUP_TIMEOUT",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up if confdb is unreachable this long at start [default: wait for ever].",
)
@click.option(
    "--api-domain",
    envvar="SWS_API_DOMAIN",
    default="",
    help="The domain the platform serves its API at; no service may take it.",
)
def serve(
    database_url: str,
    listen: str,
    workers: int,
    threads: int,
    log_level: str,
    startup_timeout: float | None,
    api_domain: str,
) -> None:
    """Apply migrations, then serve the API with gunicorn."""
    config = Config(
        database_url=database_url,
        listen=listen,
        workers=workers,
        threads=threads,
        log_level=log_level,
        startup_timeout=startup_timeout,
        reserved_domains=(normalize_domain(api_domain),) if api_domain.strip() else (),
    )
    Server(config).run()


@main.command("migrate")
@_database_url
@_wait
def migrate_command(database_url: str, wait_s: float) -> None:
    """Apply pending confdb migrations and exit."""
    logfmt.configure("info")
    applied = wait_and_migrate(database_url, wait_s)
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )


@main.command("create-user")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May list every service and see the platform.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the token to this file (mode 0600) instead of standard output.",
)
@click.option(
    "--if-missing", is_flag=True, help="Succeed quietly, changing nothing, if NAME exists."
)
@_database_url
@_wait
def create_user_command(
    name: str,
    admin: bool,
    token_file: str | None,
    if_missing: bool,
    database_url: str,
    wait_s: float,
) -> None:
    """Create a user and print its bearer token, once: only its hash is kept."""
    logfmt.configure("info")
    wait_and_migrate(database_url, wait_s)
    token = new_token()
    with translate_errors(database_url), connect(database_url) as conn, conn.transaction():
        user = create_user(conn, name, token, is_admin=admin)
        if user is None:
            if if_missing:
                return
            raise Conflict(f'user "{name}" already exists')
        # Written before the commit: if the token cannot be saved, no user is left holding
        # a token nobody has.
        if token_file is not None:
            _write_secret(token_file, token + "\n")
    logfmt.info("user.created", name=name, admin=admin)
    if token_file is None:
        sys.stdout.write(token + "\n")
        sys.stdout.flush()


@main.command("rotate-token")
@click.argument("name")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the new token to this file (mode 0600) instead of standard output.",
)
@_database_url
@_wait
def rotate_token_command(
    name: str, token_file: str | None, database_url: str, wait_s: float
) -> None:
    """Give a user a new bearer token and print it, once: the old one stops working."""
    logfmt.configure("info")
    wait_and_migrate(database_url, wait_s)
    token = new_token()
    with translate_errors(database_url), connect(database_url) as conn, conn.transaction():
        if replace_token(conn, name, token) is None:
            raise NotFound(f'no user "{name}"')
        # Written before the commit: if the new token cannot be saved, the old one still works.
        if token_file is not None:
            _write_secret(token_file, token + "\n")
    logfmt.info("user.token_rotated", name=name)
    if token_file is None:
        sys.stdout.write(token + "\n")
        sys.stdout.flush()


def _write_secret(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SwsError(f"--token-file {path}: {exc.strerror}; nothing was changed") from exc
