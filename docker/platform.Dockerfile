# sws/platform: the SWS distribution; compose runs sws-apiserver, sws-agent,
# sws-proxy and sws-loadbalancer (and swsctl) from this one image.
# BASE_IMAGE is sws/base:bookworm (offline) or python:3.11-slim (public).
#
# Built by docker/build from a context that holds only docker/.wheels, the
# wheelhouse it downloads on the host, and docker/.build/dist, the SWS wheel it
# builds on the host (with the proxy's compiled modules): nothing here reaches
# the network or needs a compiler.

ARG BASE_IMAGE=sws/base:bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Dependencies first: this layer is reused until the wheelhouse changes.
COPY docker/.wheels/ /wheels/
RUN python3 -m venv /opt/sws \
 && /opt/sws/bin/pip install --no-index --find-links /wheels -r /wheels/requirements.txt
COPY docker/.build/dist/ /dist/
RUN /opt/sws/bin/pip install --no-deps --no-index /dist/*.whl

FROM ${BASE_IMAGE}
ENV VIRTUAL_ENV=/opt/sws \
    PATH=/opt/sws/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 sws \
 && useradd --uid 10001 --gid sws --no-log-init --home-dir /var/lib/sws --create-home \
    --shell /usr/sbin/nologin sws
# Not root by default. The agent needs the Docker socket: compose runs it with
# the socket's group (group_add) or as root.
USER sws
WORKDIR /var/lib/sws
CMD ["swsctl", "--help"]
# Last and in one piece: every layer commit is slow on some storage drivers, so
# a change of source costs this one copy rather than a chain of steps.
COPY --from=build /opt/sws /opt/sws
