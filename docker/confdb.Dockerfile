# sws/confdb: PostgreSQL 15 for the configuration store.
# BASE_IMAGE is sws/base-postgres:bookworm (offline, from docker/build-base) or
# postgres:15-bookworm (public); both put the server in /usr/lib/postgresql/15.
# Built by docker/build, whose context holds only the files copied here.
ARG BASE_IMAGE=sws/base-postgres:bookworm
FROM ${BASE_IMAGE}

ENV PG_MAJOR=15 \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8 \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN mkdir -p /var/run/postgresql /var/lib/postgresql/data /docker-entrypoint-initdb.d \
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data \
 && chmod 3777 /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data

COPY docker/confdb-entrypoint.sh /usr/local/bin/confdb-entrypoint

VOLUME /var/lib/postgresql/data
EXPOSE 5432
# Fast shutdown: open sessions are ended and the cluster is left clean, where a
# smart shutdown (SIGTERM) would wait for every client to leave on its own.
STOPSIGNAL SIGINT
# TCP on purpose: during first-start setup the server listens on its socket only.
HEALTHCHECK --interval=3s --timeout=3s --start-period=60s --retries=3 \
    CMD ["pg_isready", "--quiet", "--host=127.0.0.1", "--port=5432"]

ENTRYPOINT ["confdb-entrypoint"]
CMD ["postgres"]
