"""Tenant isolation: another user's service is invisible, untouchable and never named."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.integration.apiserver.conftest import Caller, document, unique

pytestmark = pytest.mark.postgres


def test_another_users_service_looks_exactly_like_a_missing_one(
    client: FlaskClient, alice: Caller, bob: Caller
) -> None:
    name = unique()
    assert (
        client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers).status_code
        == 201
    )
    missing = unique()

    for method in ("get", "delete"):
        theirs = getattr(client, method)(f"/v1/services/{name}", headers=bob.headers)
        absent = getattr(client, method)(f"/v1/services/{missing}", headers=bob.headers)
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json == {"error": f'service "{name}" not found'}
        assert absent.json == {"error": f'service "{missing}" not found'}

    listing = client.get("/v1/services", headers=bob.headers).json["services"]
    assert name not in [s["name"] for s in listing]


def test_another_user_cannot_change_take_or_delete_it(
    client: FlaskClient, alice: Caller, bob: Caller
) -> None:
    name = unique()
    domain = f"{unique('site')}.example.com"
    client.put(f"/v1/services/{name}", json=document(name, domain=domain), headers=alice.headers)

    change = client.put(
        f"/v1/services/{name}", json=document(name, domain=domain, replicas=5), headers=bob.headers
    )
    assert change.status_code == 409
    other = unique()
    take_domain = client.put(
        f"/v1/services/{other}", json=document(other, domain=domain), headers=bob.headers
    )
    assert take_domain.status_code == 409
    assert name not in take_domain.json["error"]
    assert client.delete(f"/v1/services/{name}", headers=bob.headers).status_code == 404
    assert client.delete(f"/v1/services/{name}?purge=1", headers=bob.headers).status_code == 404

    # Nothing of it reached alice's service.
    mine = client.get(f"/v1/services/{name}", headers=alice.headers).json
    assert mine["generation"] == 1
    assert mine["deleting"] is False
    assert mine["spec"]["spec"]["replicas"] == 1
    assert mine["owner"] == alice.name


def test_admin_may_read_but_not_change_anothers_service(
    client: FlaskClient, alice: Caller, admin: Caller
) -> None:
    name = unique()
    client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers)
    assert client.get(f"/v1/services/{name}", headers=admin.headers).json["owner"] == alice.name
    assert client.delete(f"/v1/services/{name}", headers=admin.headers).status_code == 404
    change = client.put(
        f"/v1/services/{name}", json=document(name, replicas=2), headers=admin.headers
    )
    assert change.status_code == 409
