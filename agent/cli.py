"""sws-agent: build a Config from the environment and run the Agent until SIGTERM/SIGINT.

Environment: SWS_DATABASE_URL (required), DOCKER_HOST (or SWS_DOCKER_URL; default socket),
SWS_INSTANCE (sws), SWS_SERVICES_NETWORK (sws-services), SWS_INTERVAL (10), SWS_START_TIMEOUT
(60), SWS_GRACE_PERIOD (2), SWS_STOP_TIMEOUT (10), SWS_PROXIES (name=http://host:port,...),
SWS_LOG_LEVEL (INFO). Durations are seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from agent.config import Config
from agent.reconciler import Agent
from sws.errors import SwsError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return
    if args:
        print(f"sws-agent: unexpected argument {args[0]!r} (configure with SWS_* variables)")
        sys.exit(2)
    try:
        config = Config.from_env(os.environ)
    except SwsError as e:
        print(f"sws-agent: {e.message}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
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
