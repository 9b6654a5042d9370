-- The confdb schema: desired state (users, services), observed state (status, replicas,
-- events) and the proxy side (route-table versions, what each proxy runs).

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    -- sha256 of the bearer token; the token itself is never stored.
    token_hash  text NOT NULL UNIQUE,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE services (
    name          text PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users (id),
    -- Lowercased; unique across every service (deleting ones keep it until they are gone).
    domain        text NOT NULL UNIQUE,
    spec          jsonb NOT NULL,
    spec_hash     text NOT NULL,
    -- Bumped on every change of the spec or of the deletion marker.
    generation    bigint NOT NULL DEFAULT 1,
    deleting      boolean NOT NULL DEFAULT false,
    purge_volume  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX services_owner ON services (owner_id);

-- What the agent last observed of each service.
CREATE TABLE service_status (
    service              text PRIMARY KEY REFERENCES services (name) ON DELETE CASCADE,
    observed_generation  bigint NOT NULL DEFAULT 0,
    state                text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'starting', 'running', 'failing', 'deleting')),
    message              text NOT NULL DEFAULT '',
    ready_replicas       integer NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE replica_status (
    service         text NOT NULL REFERENCES services (name) ON DELETE CASCADE,
    container_id    text NOT NULL,
    container_name  text NOT NULL,
    replica         integer NOT NULL,
    generation      bigint NOT NULL,
    -- "ip:port" on the services network, empty until the container has an address.
    address         text NOT NULL DEFAULT '',
    ready           boolean NOT NULL DEFAULT false,
    state           text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, container_id)
);

CREATE TABLE events (
    id       bigserial PRIMARY KEY,
    service  text NOT NULL REFERENCES services (name) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    type     text NOT NULL DEFAULT 'Normal' CHECK (type IN ('Normal', 'Warning')),
    reason   text NOT NULL,
    message  text NOT NULL DEFAULT ''
);
CREATE INDEX events_service ON events (service, id DESC);

-- Every route table the agent has published; the highest version is the one to run.
CREATE TABLE route_tables (
    version     bigint PRIMARY KEY,
    routes      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What each proxy runs, as the agent last saw it.
CREATE TABLE proxies (
    name           text PRIMARY KEY,
    route_version  bigint NOT NULL DEFAULT 0,
    state          text NOT NULL DEFAULT 'unknown'
                   CHECK (state IN ('unknown', 'serving', 'draining', 'failed')),
    message        text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Desired state changed: wake the agent, inside the writing transaction so a rolled-back write
-- wakes nobody and a committed one always does.
CREATE FUNCTION notify_desired_state() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('sws_desired_state', COALESCE(NEW.name, OLD.name));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER services_notify
    AFTER INSERT OR UPDATE OR DELETE ON services
    FOR EACH ROW EXECUTE FUNCTION notify_desired_state();
