"""Logs name services, users and outcomes, and never carry a token or an env value."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from tests.integration.apiserver.conftest import Caller, document, unique

pytestmark = pytest.mark.postgres

SECRET = "s3cr3t-env-value-7f2c"


def test_logs_have_events_and_no_secrets(
    client: FlaskClient, alice: Caller, bob: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = unique()
    env = [{"name": "DB_PASSWORD", "value": SECRET}]
    client.put(f"/v1/services/{name}", json=document(name, env=env), headers=alice.headers)
    client.put(
        f"/v1/services/{name}", json=document(name, env=env, replicas=2), headers=alice.headers
    )
    client.get(f"/v1/services/{name}", headers=alice.headers)
    # Rejections log too: a bad env entry next to the secret, another user, a bad token.
    bad = document(name, env=[*env, {"name": "1BAD", "value": SECRET}])
    assert client.put(f"/v1/services/{name}", json=bad, headers=alice.headers).status_code == 400
    assert (
        client.put(
            f"/v1/services/{name}", json=document(name, env=env), headers=bob.headers
        ).status_code
        == 409
    )
    wrong = {"Authorization": f"Bearer {alice.token}x"}
    assert client.get("/v1/services", headers=wrong).status_code == 401
    client.delete(f"/v1/services/{name}", headers=alice.headers)

    text = caplog.text
    assert f"service.applied name={name} user={alice.name} generation=2 result=updated" in text
    assert f"service.deleting name={name} user={alice.name} generation=3" in text
    assert "request.rejected" in text
    for secret in (SECRET, alice.token, bob.token):
        assert secret not in text
