"""One swap round as the agent runs it, in a process of its own (so a test can kill it).

Configured by the agent's SWS_* environment; swaps the proxies to confdb's newest table.
"""

from __future__ import annotations

import logging
import os
import sys

from agent.config import Config
from agent.swap import Swapper
from confdb import routes
from confdb.db import connect


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = Config.from_env(os.environ)
    with connect(config.database_url) as conn:
        table = routes.latest_route_table(conn)
    assert table is not None
    swapper = Swapper(config)
    try:
        swapper.round(table)
    finally:
        swapper.close()


if __name__ == "__main__":
    main()
