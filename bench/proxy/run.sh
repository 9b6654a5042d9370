#!/bin/sh
# sws-proxy against nginx in one run; see run.py for what is measured and how. Builds the
# virtualenv and the compiled proxy modules first (make build), and runs with them.
set -e
cd "$(dirname "$0")/../.."
make build >/dev/null
exec .venv/bin/python bench/proxy/run.py "$@"
