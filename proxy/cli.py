"""``sws-proxy``: run the host-routing HTTP proxy."""

from __future__ import annotations

import logging
import sys

import click

from proxy.config import Config, parse_hostport
from sws.errors import RouteTableError


def _hostport(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return parse_hostport(value, f"--{param.name}")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(context_settings={"auto_envvar_prefix": "SWS_PROXY"})
@click.option(
    "--listen",
    callback=_hostport,
    default="0.0.0.0:8080",
    show_default=True,
    help="Address to serve proxied HTTP on.",
)
@click.option(
    "--admin",
    callback=_hostport,
    default="127.0.0.1:8081",
    show_default=True,
    help="Address of the admin API (keep it private).",
)
@click.option(
    "--routes",
    "routes_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Route table JSON loaded at start.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the listen port (SO_REUSEPORT).",
)
@click.option("--no-access-log", is_flag=True, help="Do not write one JSON line per request.")
@click.option(
    "--upstream-timeout",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds a backend may stay silent while an answer is due.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.001),
    default=5.0,
    show_default=True,
    help="Seconds to wait for a backend to accept a connection.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.001),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request head.",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(min=0.001),
    default=75.0,
    show_default=True,
    help="Seconds an idle client connection is kept open.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0.001),
    default=30.0,
    show_default=True,
    help="Seconds SIGTERM waits for connections to finish.",
)
@click.option(
    "--drain-idle-grace",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds a drain leaves idle keep-alive connections open for one last request.",
)
@click.option(
    "--shutdown-delay",
    type=click.FloatRange(min=0),
    default=1.5,
    show_default=True,
    help="Seconds SIGTERM keeps serving while /readyz says 503, before draining.",
)
def main(
    listen: tuple[str, int],
    admin: tuple[str, int],
    routes_file: str | None,
    workers: int,
    no_access_log: bool,
    upstream_timeout: float,
    connect_timeout: float,
    header_timeout: float,
    keepalive_timeout: float,
    drain_timeout: float,
    drain_idle_grace: float,
    shutdown_delay: float,
) -> None:
    """Route HTTP/1.1 requests to backends by their Host header."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = Config(
        listen_host=listen[0],
        listen_port=listen[1],
        admin_host=admin[0],
        admin_port=admin[1],
        routes_file=routes_file,
        workers=workers,
        access_log=not no_access_log,
        upstream_timeout=upstream_timeout,
        connect_timeout=connect_timeout,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        drain_timeout=drain_timeout,
        drain_idle_grace=drain_idle_grace,
        shutdown_delay=shutdown_delay,
    )
    try:
        if workers > 1:
            from proxy.workers import Supervisor

            Supervisor(config).run()
        else:
            from proxy.server import Server

            Server(config).run()
    except RouteTableError as exc:
        click.echo(f"sws-proxy: {exc.message}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"sws-proxy: {exc}", err=True)
        sys.exit(1)
