"""The /v1 API against a real confdb: every status code it promises, and what it stores."""

from __future__ import annotations

import json

import psycopg
import pytest
from flask.testing import FlaskClient

from apiserver.app import create_app
from apiserver.config import Config
from tests.integration.apiserver.conftest import Caller, document, unique
from tests.unit.apiserver.openapi_schema import conforms

pytestmark = pytest.mark.postgres


def put(client: FlaskClient, caller: Caller, name: str, body: object, **kw: object):  # type: ignore[no-untyped-def]
    return client.put(f"/v1/services/{name}", json=body, headers=caller.headers, **kw)


# -- apply ---------------------------------------------------------------------------------------


def test_put_creates_then_reports_unchanged_then_updates(
    client: FlaskClient, alice: Caller
) -> None:
    name = unique()
    created = put(client, alice, name, document(name))
    assert created.status_code == 201
    assert created.json["result"] == "created"
    assert created.json["generation"] == 1
    assert created.json["owner"] == alice.name
    assert created.json["state"] == "pending"
    assert created.json["replicas"] == {"desired": 1, "ready": 0}
    conforms(created.json, "AppliedService")

    again = put(client, alice, name, document(name))
    assert again.status_code == 200
    assert again.json["result"] == "unchanged"
    assert again.json["generation"] == 1

    changed = put(client, alice, name, document(name, replicas=3))
    assert changed.status_code == 200
    assert changed.json["result"] == "updated"
    assert changed.json["generation"] == 2
    assert changed.json["spec"]["spec"]["replicas"] == 3


def test_a_document_that_means_the_same_is_unchanged(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    env = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert put(client, alice, name, document(name, env=env)).status_code == 201
    # Same meaning, different spelling: env order, domain case, explicit default replicas.
    same = document(name, domain=f"{name.upper()}.Example.COM.", env=env[::-1], replicas=1)
    response = put(client, alice, name, same)
    assert response.json["result"] == "unchanged"
    assert response.json["generation"] == 1


def test_get_returns_the_spec_and_status_shape(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    put(client, alice, name, document(name, env=[{"name": "K", "value": "v"}]))
    response = client.get(f"/v1/services/{name}", headers=alice.headers)
    assert response.status_code == 200
    body = response.json
    assert body["name"] == name
    assert body["spec"] == {
        "apiVersion": "v1",
        "spec": {
            "name": name,
            "port": 8081,
            "domain": f"{name}.example.com",
            "image": "registry.local/web:1",
            "replicas": 1,
            "env": [{"name": "K", "value": "v"}],
        },
    }
    assert body["generation"] == 1
    assert body["observedGeneration"] == 0
    assert body["instances"] == []
    assert body["events"] == []
    assert body["createdAt"].endswith("Z")


def test_get_shows_what_the_agent_observed(
    client: FlaskClient, alice: Caller, database_url: str
) -> None:
    name = unique()
    put(client, alice, name, document(name, replicas=2))
    # Written the way the agent reports what it sees.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO service_status (service, observed_generation, state, message, "
            "ready_replicas) VALUES (%s, 1, 'starting', '1 of 2 ready', 1)",
            (name,),
        )
        for replica, ready in ((0, True), (1, False)):
            conn.execute(
                "INSERT INTO replica_status (service, container_id, container_name, replica, "
                "generation, address, ready, state) VALUES (%s, %s, %s, %s, 1, %s, %s, 'running')",
                (
                    name,
                    f"c{replica}",
                    f"{name}-{replica}",
                    replica,
                    f"10.0.0.{replica + 2}:8081",
                    ready,
                ),
            )
        for i in range(25):
            conn.execute(
                "INSERT INTO events (service, type, reason, message) VALUES (%s, 'Normal', %s, %s)",
                (name, f"Reason{i}", f"message {i}"),
            )
    body = client.get(f"/v1/services/{name}", headers=alice.headers).json
    assert body["state"] == "starting"
    assert body["message"] == "1 of 2 ready"
    assert body["observedGeneration"] == 1
    assert body["replicas"] == {"desired": 2, "ready": 1}
    assert [(i["name"], i["address"], i["ready"]) for i in body["instances"]] == [
        (f"{name}-0", "10.0.0.2:8081", True),
        (f"{name}-1", "10.0.0.3:8081", False),
    ]
    assert body["instances"][0]["container"] == "c0"
    # The 20 most recent, newest first.
    assert len(body["events"]) == 20
    assert body["events"][0]["reason"] == "Reason24"
    assert body["events"][-1]["reason"] == "Reason5"
    assert set(body["events"][0]) == {"at", "type", "reason", "message"}
    conforms(body, "Service")


def test_list_shows_only_the_callers_services(
    client: FlaskClient, alice: Caller, bob: Caller
) -> None:
    mine, theirs = unique(), unique()
    put(client, alice, mine, document(mine))
    put(client, bob, theirs, document(theirs))
    response = client.get("/v1/services", headers=alice.headers)
    assert response.status_code == 200
    names = [s["name"] for s in response.json["services"]]
    assert names == [mine]
    row = response.json["services"][0]
    assert row["domain"] == f"{mine}.example.com"
    assert row["image"] == "registry.local/web:1"
    assert "spec" not in row  # env values stay out of listings
    for service in response.json["services"]:
        conforms(service, "ServiceSummary")


def test_admin_lists_everything_with_all(
    client: FlaskClient, alice: Caller, bob: Caller, admin: Caller
) -> None:
    a, b = unique(), unique()
    put(client, alice, a, document(a))
    put(client, bob, b, document(b))
    response = client.get("/v1/services?all=1", headers=admin.headers)
    assert response.status_code == 200
    owners = {s["name"]: s["owner"] for s in response.json["services"]}
    assert owners[a] == alice.name
    assert owners[b] == bob.name


def test_all_is_forbidden_to_non_admins(client: FlaskClient, alice: Caller) -> None:
    response = client.get("/v1/services?all=1", headers=alice.headers)
    assert response.status_code == 403
    assert "admin" in response.json["error"]


def test_bad_flag_value_is_400(client: FlaskClient, alice: Caller) -> None:
    response = client.get("/v1/services?all=maybe", headers=alice.headers)
    assert response.status_code == 400
    assert "all" in response.json["error"]


# -- delete --------------------------------------------------------------------------------------


def test_delete_marks_deleting_and_bumps_generation_once(
    client: FlaskClient, alice: Caller
) -> None:
    name = unique()
    put(client, alice, name, document(name, volumeMount="/data"))
    response = client.delete(f"/v1/services/{name}", headers=alice.headers)
    assert response.status_code == 202
    assert response.json == {
        "name": name,
        "generation": 2,
        "state": "deleting",
        "purgeVolume": False,
    }
    again = client.delete(f"/v1/services/{name}", headers=alice.headers)
    assert again.json["generation"] == 2
    purge = client.delete(f"/v1/services/{name}?purge=1", headers=alice.headers)
    assert purge.json == {"name": name, "generation": 3, "state": "deleting", "purgeVolume": True}
    conforms(purge.json, "Deletion")
    body = client.get(f"/v1/services/{name}", headers=alice.headers).json
    assert body["state"] == "deleting"
    assert body["deleting"] is True


def test_put_on_a_deleting_service_cancels_the_deletion(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    put(client, alice, name, document(name))
    client.delete(f"/v1/services/{name}?purge=true", headers=alice.headers)
    response = put(client, alice, name, document(name))
    assert response.status_code == 200
    assert response.json["result"] == "updated"
    assert response.json["generation"] == 3
    assert response.json["deleting"] is False
    assert response.json["purgeVolume"] is False


# -- errors --------------------------------------------------------------------------------------


def test_invalid_json_is_400(client: FlaskClient, alice: Caller) -> None:
    response = client.put(
        "/v1/services/web",
        data=b'{"apiVersion": "v1", "spec": {',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"].startswith("invalid JSON at line 1 column")


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b"NaN",
        b'{"spec": {"port": 1e999999}}',
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
    ],
    ids=["not-utf8", "nan", "huge-exponent", "deep-nesting", "long-number"],
)
def test_hostile_json_is_400(client: FlaskClient, alice: Caller, body: bytes) -> None:
    response = client.put(
        "/v1/services/web", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"]


def test_readme_example_lists_every_field_error(client: FlaskClient, alice: Caller) -> None:
    # The SWS README's own example, with its typo in the second env entry.
    body = {
        "apiVersion": "v1",
        "spec": {
            "name": "service-name",
            "port": 8081,
            "domain": "example.com",
            "image": "my-repo/my-image:somve-version",
            "volumeMount": "/foo/bar",
            "env": [{"name": "KEY_1", "value": "foo"}, {"name": "KEY_2", "bar": "bar"}],
        },
    }
    response = put(client, alice, "service-name", body)
    assert response.status_code == 400
    details = response.json["details"]
    assert {"field": "spec.env[1]", "message": "unknown key 'bar'"} in details
    assert {"field": "spec.env[1]", "message": "missing 'value'"} in details
    assert "spec.env[1]: unknown key 'bar'" in response.json["error"]


def test_every_field_error_is_listed(client: FlaskClient, alice: Caller) -> None:
    body = {
        "apiVersion": "v2",
        "spec": {"name": "Bad_Name", "port": 70000, "domain": "x..y", "image": "UPPER"},
    }
    response = put(client, alice, "bad-name", body)
    assert response.status_code == 400
    fields = {d["field"] for d in response.json["details"]}
    assert {"apiVersion", "spec.name", "spec.port", "spec.domain", "spec.image"} <= fields
    assert {"field": "spec.port", "message": "70000 is not a port (1-65535)"} in response.json[
        "details"
    ]


def test_url_name_must_match_spec_name(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    response = put(client, alice, "other-name", document(name))
    assert response.status_code == 400
    conforms(response.json, "Error")
    assert response.json["details"] == [
        {
            "field": "spec.name",
            "message": f'"{name}" does not match the URL\'s service "other-name"',
        }
    ]
    assert client.get(f"/v1/services/{name}", headers=alice.headers).status_code == 404


def test_missing_token_is_401_with_challenge(client: FlaskClient) -> None:
    response = client.get("/v1/services")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in response.json["error"]


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer\x00"]
)
def test_wrong_token_is_401(client: FlaskClient, header: str) -> None:
    response = client.put(
        "/v1/services/web", json=document("web"), headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_service_is_404(client: FlaskClient, alice: Caller) -> None:
    for path in ("/v1/services/nothing-here", "/v1/services/NOT%20A%20NAME", "/v1/services/a%00b"):
        response = client.get(path, headers=alice.headers)
        assert response.status_code == 404, path
        assert "not found" in response.json["error"]
    assert client.delete("/v1/services/nothing-here", headers=alice.headers).status_code == 404


def test_unknown_path_and_wrong_method_are_json(client: FlaskClient, alice: Caller) -> None:
    missing = client.get("/v2/whatever", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json["error"]
    wrong = client.post("/v1/services", headers=alice.headers)
    assert wrong.status_code == 405
    assert wrong.json["error"]
    assert "GET" in wrong.headers["Allow"]


def test_name_taken_by_another_user_is_409(client: FlaskClient, alice: Caller, bob: Caller) -> None:
    name = unique()
    put(client, alice, name, document(name))
    response = put(client, bob, name, document(name, domain=f"other-{name}.example.com"))
    assert response.status_code == 409
    assert response.json["error"] == f'service name "{name}" is already taken by another user'


def test_domain_of_own_service_is_409_naming_it(client: FlaskClient, alice: Caller) -> None:
    first, second = unique(), unique()
    put(client, alice, first, document(first, domain="shared-a.example.com"))
    response = put(client, alice, second, document(second, domain="Shared-A.example.com"))
    assert response.status_code == 409
    assert (
        response.json["error"]
        == f'domain "shared-a.example.com" is already served by service "{first}"'
    )


def test_domain_of_anothers_service_is_409_without_naming_it(
    client: FlaskClient, alice: Caller, bob: Caller
) -> None:
    first, second = unique(), unique()
    domain = f"{unique('site')}.example.com"
    put(client, alice, first, document(first, domain=domain))
    response = put(client, bob, second, document(second, domain=domain))
    assert response.status_code == 409
    assert first not in response.json["error"]
    assert response.json["error"] == f'domain "{domain}" is already served by another service'
    # Moving an existing service onto the domain is refused the same way.
    put(client, bob, second, document(second))
    moved = put(client, bob, second, document(second, domain=domain))
    assert moved.status_code == 409
    assert first not in moved.json["error"]


def test_body_over_one_mib_is_413(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    big = document(name, env=[{"name": "BIG", "value": "x" * (1024 * 1024)}])
    response = put(client, alice, name, big)
    assert response.status_code == 413
    assert response.json["error"] == "request body is larger than 1 MiB"


def test_body_must_be_declared_json(client: FlaskClient, alice: Caller) -> None:
    name = unique()
    for content_type in ("text/plain", "application/x-yaml", None):
        headers = dict(alice.headers)
        if content_type:
            headers["Content-Type"] = content_type
        response = client.put(
            f"/v1/services/{name}", data=json.dumps(document(name)), headers=headers
        )
        assert response.status_code == 415, content_type
        assert "application/json" in response.json["error"]


# -- platform and meta -----------------------------------------------------------------------------


def test_platform_view_is_for_admins(
    client: FlaskClient, alice: Caller, admin: Caller, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO route_tables (version, routes) VALUES (7, '{}') ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO proxies (name, route_version, state, message) VALUES "
            "('proxy-1', 7, 'serving', ''), ('proxy-2', 6, 'draining', 'swapping') "
            "ON CONFLICT (name) DO NOTHING"
        )
    assert client.get("/v1/platform", headers=alice.headers).status_code == 403
    response = client.get("/v1/platform", headers=admin.headers)
    assert response.status_code == 200
    assert response.json["routeVersion"] >= 7
    proxies = {p["name"]: p for p in response.json["proxies"]}
    assert proxies["proxy-1"]["routeVersion"] == 7
    assert proxies["proxy-2"]["state"] == "draining"
    assert proxies["proxy-2"]["message"] == "swapping"
    assert proxies["proxy-1"]["updatedAt"].endswith("Z")
    conforms(response.json, "Platform")


def test_healthz_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json["openapi"].startswith("3.1")


def test_the_platforms_api_domain_is_reserved(database_url: str, make_caller) -> None:  # type: ignore[no-untyped-def]
    app = create_app(
        Config(database_url=database_url, db_timeout=3.0, reserved_domains=("api.sws.localhost",))
    )
    try:
        caller = make_caller()
        document = {
            "apiVersion": "v1",
            "spec": {"name": "hijack", "port": 8080, "domain": "API.sws.localhost.", "image": "x"},
        }
        response = app.test_client().put(
            "/v1/services/hijack", json=document, headers=caller.headers
        )
        assert response.status_code == 400
        assert response.get_json()["details"] == [
            {"field": "spec.domain", "message": '"api.sws.localhost" is reserved for the platform'}
        ]
        response = app.test_client().get("/v1/services/hijack", headers=caller.headers)
        assert response.status_code == 404
    finally:
        app.extensions["sws.store"].close()
