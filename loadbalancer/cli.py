"""sws-loadbalancer: the command line that builds a Config and runs a Server."""

from __future__ import annotations

import logging

import click

from loadbalancer import logfmt
from loadbalancer.config import (
    Address,
    BackendConfig,
    Config,
    ConfigError,
    parse_address,
    parse_backend,
)
from loadbalancer.server import Server


def _listen(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[Address, ...]:
    try:
        return tuple(parse_address(value, "listen", bind=True) for value in values)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _admin(ctx: click.Context, param: click.Parameter, value: str) -> Address:
    try:
        return parse_address(value, "admin", bind=True)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _backends(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[BackendConfig, ...]:
    try:
        return tuple(parse_backend(value) for value in values)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


@click.command(context_settings={"auto_envvar_prefix": "SWS_LB", "show_default": True})
@click.option(
    "--listen",
    "listen",
    multiple=True,
    required=True,
    callback=_listen,
    metavar="HOST:PORT",
    help="Address to accept client connections on; repeatable.",
)
@click.option(
    "--admin",
    required=True,
    callback=_admin,
    metavar="HOST:PORT",
    help="Address of the admin API.",
)
@click.option(
    "--backend",
    "backends",
    envvar="SWS_LB_BACKEND",
    multiple=True,
    required=True,
    callback=_backends,
    metavar="NAME=HOST:PORT[,health=URL]",
    help="A backend; checked by TCP connect, or by GET on an http:// health URL "
    "(200 means up). Repeatable. HOST may be a DNS name, resolved on every connect.",
)
@click.option("--check-interval", default=0.5, type=float, help="Seconds between checks.")
@click.option("--check-timeout", default=0.5, type=float, help="Seconds a check may take.")
@click.option("--rise", default=2, type=int, help="Good checks that bring a backend up.")
@click.option("--fall", default=2, type=int, help="Failed checks that take a backend down.")
@click.option(
    "--connect-timeout",
    default=1.0,
    type=float,
    help="Seconds an upstream connect may take before the next backend is tried.",
)
@click.option(
    "--half-close-timeout",
    default=60.0,
    type=float,
    help="Seconds a connection may stay silent once one direction has ended.",
)
@click.option(
    "--resolve-ttl",
    default=1.0,
    type=float,
    help="Seconds a backend name's addresses are reused; a failed connect forgets them "
    "at once. 0 looks the name up on every connect.",
)
@click.option(
    "--grace-period",
    default=8.0,
    type=float,
    help="Seconds open connections may finish after SIGTERM.",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def main(
    listen: tuple[Address, ...],
    admin: Address,
    backends: tuple[BackendConfig, ...],
    check_interval: float,
    check_timeout: float,
    rise: int,
    fall: int,
    connect_timeout: float,
    half_close_timeout: float,
    resolve_ttl: float,
    grace_period: float,
    log_level: str,
) -> None:
    """Balance TCP connections over backends by least connections."""
    try:
        config = Config(
            listen=listen,
            admin=admin,
            backends=backends,
            check_interval=check_interval,
            check_timeout=check_timeout,
            rise=rise,
            fall=fall,
            connect_timeout=connect_timeout,
            half_close_timeout=half_close_timeout,
            resolve_ttl=resolve_ttl,
            grace_period=grace_period,
            log_level=log_level,
        )
    except ConfigError as exc:
        raise click.UsageError(exc.message) from None
    logfmt.configure(config.log_level)
    try:
        Server(config).run()
    except OSError as exc:
        logfmt.emit(
            logging.getLogger(logfmt.LOGGER_NAME),
            logging.ERROR,
            "startup_failed",
            error=exc.strerror or str(exc),
        )
        raise SystemExit(1) from None
