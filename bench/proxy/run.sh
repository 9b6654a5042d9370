#!/bin/sh
# sws-proxy against nginx in one run; see run.py for what is measured and how.
cd "$(dirname "$0")/../.." && exec python3 bench/proxy/run.py "$@"
