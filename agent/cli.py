"""sws-agent: build a Config from the environment and run the Agent until SIGTERM/SIGINT.

Environment: SWS_DATABASE_URL (required), DOCKER_HOST (or SWS_DOCKER_URL; default socket),
SWS_INSTANCE (sws), SWS_SERVICES_NETWORK (sws-services), SWS_INTERVAL (10), SWS_START_TIMEOUT
(60), SWS_GRACE_PERIOD (2), SWS_STOP_TIMEOUT (10), SWS_PROXIES (name=http://host:port,...),
SWS_LOADBALANCER_ADMIN (http://host:port), SWS_SWAP_DRAIN_TIMEOUT (10), SWS_SWAP_UP_TIMEOUT
(10), SWS_PROXY_CHECK_INTERVAL (1), SWS_ADMIN_TIMEOUT (2), SWS_API_DOMAIN and SWS_API_BACKEND
(host:port), SWS_LOG_LEVEL (INFO). Durations are seconds.

Proxy maintenance, with the same environment (e.g. `docker-compose exec -T agent ...`):

  sws-agent proxy drain NAME [--timeout S] [--force]
      drain NAME in the balancer and on itself, wait (S, default SWS_SWAP_DRAIN_TIMEOUT)
      until its connections are gone, and hold it: the agent's swaps leave it alone.
      Refused while no other proxy is serving, unless --force.
  sws-agent proxy release NAME [--timeout S]
      end the hold and swap NAME back in: wait (S, default 60) for it to answer, push the
      newest route table, resume it, enable it in the balancer, wait until it is up.
  sws-agent proxy status
      each proxy's route version, state and message as last recorded.

Exit status: 0 done, 1 failed (the reason on stderr), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

import psycopg

from agent.config import Config
from agent.reconciler import Agent
from agent.swap import Swapper
from confdb import routes
from confdb.db import connect
from confdb.migrate import migrate
from sws.errors import InvalidInput, SwsError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return
    if args and args[0] == "proxy":
        sys.exit(proxy_command(args[1:]))
    if args:
        print(f"sws-agent: unexpected argument {args[0]!r} (configure with SWS_* variables)")
        sys.exit(2)
    config = _config()
    _logging(config)
    agent = Agent(config)

    def _stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        agent.run()
    except SwsError as e:
        logging.getLogger("sws.agent").error("agent.failed error=%s", e.message)
        sys.exit(1)


def _config() -> Config:
    try:
        return Config.from_env(os.environ)
    except SwsError as e:
        print(f"sws-agent: {e.message}", file=sys.stderr)
        sys.exit(2)


def _logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def proxy_command(argv: list[str]) -> int:
    """`sws-agent proxy drain|release|status ...`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="sws-agent proxy")
    sub = parser.add_subparsers(dest="verb", required=True)
    drain = sub.add_parser("drain", help="drain a proxy and hold it for maintenance")
    drain.add_argument("name")
    drain.add_argument("--timeout", type=float, default=None)
    drain.add_argument("--force", action="store_true")
    release = sub.add_parser("release", help="end the hold and swap the proxy back in")
    release.add_argument("name")
    release.add_argument("--timeout", type=float, default=60.0)
    sub.add_parser("status", help="each proxy's route version and state")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    config = _config()
    _logging(config)
    if not config.proxies:
        print("sws-agent: SWS_PROXIES: is required (name=http://host:port,...)", file=sys.stderr)
        return 2
    try:
        with connect(config.database_url) as conn:
            migrate(conn)
        if ns.verb == "status":
            return _status(config)
        swapper = Swapper(config)
        try:
            if ns.verb == "drain":
                timeout = config.swap_drain_timeout if ns.timeout is None else ns.timeout
                view = swapper.hold(ns.name, timeout, force=ns.force)
                left = view.connections + (view.balancer.connections if view.balancer else 0)
                if left:
                    print(f"{ns.name}: held; {left} connection(s) still open after {timeout:g}s")
                else:
                    print(f"{ns.name}: drained and held for maintenance")
                return 0
            view = swapper.release(ns.name, ns.timeout)
            state, message = swapper.state(view)
            if state == "serving" and view.balancer is not None and not view.balancer.up:
                state, message = "failed", f"not up in the balancer after {ns.timeout:g}s"
            if state != "serving":
                print(f"sws-agent: {ns.name}: {state}: {message}", file=sys.stderr)
                return 1
            print(f"{ns.name}: serving route version {view.version}")
            return 0
        finally:
            swapper.close()
    except InvalidInput as e:
        print(f"sws-agent: {e.message}", file=sys.stderr)
        return 2
    except SwsError as e:
        print(f"sws-agent: {e.message}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"sws-agent: confdb: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1


def _status(config: Config) -> int:
    with connect(config.database_url) as conn:
        rows = routes.list_proxies(conn)
        latest = routes.latest_route_version(conn)
    print(f"route version {latest}")
    for p in rows:
        held = " (held)" if p.held else ""
        message = f"  {p.message}" if p.message else ""
        print(f"{p.name}  version {p.route_version}  {p.state}{held}{message}")
    return 0
