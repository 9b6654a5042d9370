"""swsctl: declare services on an SWS host. One module per command; one API client under all."""

from __future__ import annotations

import click

from sws.errors import SwsError
from swsctl import apply, configure, delete, ls, platform, status
from swsctl.client import ApiError
from swsctl.state import State


class _SwsGroup(click.Group):
    """Expected failures print one `error:` line (plus field details) and exit 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SwsError as e:
            click.echo(f"error: {e.message}", err=True)
            if isinstance(e, ApiError):
                for detail in e.details:
                    click.echo(f"  {detail}", err=True)
            ctx.exit(1)


@click.group(
    cls=_SwsGroup,
    context_settings={"auto_envvar_prefix": "SWS", "help_option_names": ["-h", "--help"]},
)
@click.option("--host", envvar="SWS_HOST", help="API URL, e.g. http://localhost.")
@click.option("--token", envvar="SWS_TOKEN", help="Bearer token (prefer SWS_TOKEN or the config).")
@click.option(
    "--api-domain",
    envvar="SWS_API_DOMAIN",
    help="Send requests with this Host header (the API's domain behind the load balancer).",
)
@click.version_option("1", prog_name="swsctl", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, host: str | None, token: str | None, api_domain: str | None) -> None:
    """Run web services on an SWS host: apply specs, list, inspect and delete them."""
    ctx.obj = State(host=host, token=token, api_domain=api_domain)
    ctx.call_on_close(ctx.obj.close)


for command in (
    configure.configure,
    apply.apply,
    delete.delete,
    ls.ls,
    status.status,
    platform.platform,
):
    main.add_command(command)
