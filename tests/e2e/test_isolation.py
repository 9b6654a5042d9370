"""Tenants are kept apart: from the platform's insides, and from each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform

# Run inside a tenant container: try every address at once, print what each attempt did.
PROBE = r"""
import json, socket, sys, concurrent.futures as cf
targets = json.loads(sys.argv[1])
def attempt(target):
    host, port = target
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as e:
        return type(e).__name__
with cf.ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(zip([f"{h}:{p}" for h, p in targets], pool.map(attempt, targets)))))
"""


def test_a_tenant_cannot_reach_confdb_or_any_admin_api(platform: Platform, tmp_path: Path) -> None:
    name = f"{platform.project}-tenant"
    platform.apply(
        {"name": name, "port": 8080, "domain": "tenant.e2e.test", "image": "sws/testapp:latest"},
        tmp_path,
    )
    [tenant] = platform.service_containers(name)
    assert set(tenant["NetworkSettings"]["Networks"]) == {platform.services_network}

    control = platform.control_network
    services = platform.services_network
    proxy1, proxy2 = platform.addresses("proxy-1"), platform.addresses("proxy-2")
    forbidden = [
        ("confdb", 5432),
        (platform.addresses("confdb")[control], 5432),
        (platform.addresses("apiserver")[control], 8080),
        (platform.addresses("loadbalancer")[control], 9100),
        (proxy1[control], 9000),
        (proxy2[control], 9000),
        # The proxies are on the tenants' network too, but their admin API is not.
        (proxy1[services], 9000),
        (proxy2[services], 9000),
    ]
    # What a tenant may reach, so a probe that cannot connect to anything fails this test.
    allowed = [(proxy1[services], 8000), (proxy2[services], 8000)]

    out = platform.docker(
        "exec", tenant["Id"], "python3", "-c", PROBE, json.dumps(forbidden + allowed), timeout=60
    ).stdout
    results = json.loads(out)
    for host, port in allowed:
        assert results[f"{host}:{port}"] == "connected", results
    reached = [t for t in forbidden if results[f"{t[0]}:{t[1]}"] == "connected"]
    assert reached == [], f"a tenant container reached {reached}: {results}"
    platform.swsctl("delete", name, "--wait", "--timeout", "60")


@pytest.fixture(scope="module")
def users(platform: Platform) -> dict[str, str]:
    return {
        "a": platform.create_user(f"{platform.project}-a"),
        "b": platform.create_user(f"{platform.project}-b"),
    }


def test_a_user_cannot_see_change_delete_or_take_the_domain_of_anothers_service(
    platform: Platform, users: dict[str, str], tmp_path: Path
) -> None:
    a, b = users["a"], users["b"]
    name = f"{platform.project}-owned"
    domain = "owned.e2e.test"
    spec = {"name": name, "port": 8080, "domain": domain, "image": "sws/testapp:latest"}
    platform.apply(spec, tmp_path, token=a)
    original = platform.service_json(name, token=a)
    hostname = platform.wait_json(domain, lambda body: True)["hostname"]

    # Not seen: B's list is empty, and the name answers like a missing one.
    assert name not in platform.swsctl("ls", "-o", "json", token=b).stdout
    status = platform.swsctl("status", name, token=b, check=False)
    assert status.returncode == 1
    assert "not found" in status.stderr

    # Not changed: applying the same name with another image is refused.
    taken = platform.apply({**spec, "image": "sws/testapp:v2"}, tmp_path, token=b, check=False)
    assert taken.returncode == 1

    # Not deleted.
    deleted = platform.swsctl("delete", name, token=b, check=False)
    assert deleted.returncode == 1
    assert "not found" in deleted.stderr

    # Not taken: another name with A's domain is refused, without naming A's service.
    squat = platform.apply(
        {**spec, "name": f"{platform.project}-squat"}, tmp_path, token=b, check=False
    )
    assert squat.returncode == 1
    assert domain in squat.stderr
    assert name not in squat.stderr
    assert f"{platform.project}-squat" not in platform.swsctl("ls", token=b).stdout

    # A's service is as it was, and still answers from the same container.
    after = platform.service_json(name, token=a)
    assert after["generation"] == original["generation"]
    assert after["spec"] == original["spec"]
    assert platform.get(domain).json()["hostname"] == hostname
    platform.swsctl("delete", name, "--wait", "--timeout", "60", token=a)
