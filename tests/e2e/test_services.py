"""What a service gets: replicas in distinct containers, its env, and a volume that outlives
updates and deletes until it is purged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import wait_until
from tests.e2e.conftest import Platform


def test_replicas_answer_from_distinct_containers(platform: Platform, tmp_path: Path) -> None:
    name = f"{platform.project}-replicas"
    domain = "replicas.e2e.test"
    platform.apply(
        {
            "name": name,
            "port": 8080,
            "domain": domain,
            "image": "sws/testapp:latest",
            "replicas": 3,
        },
        tmp_path,
    )
    containers = platform.service_containers(name)
    assert len(containers) == 3
    # The test app answers with socket.gethostname(): the container's hostname.
    expected = {c["Config"]["Hostname"] for c in containers}
    assert len(expected) == 3

    seen: set[str] = set()

    def all_seen() -> bool:
        seen.add(platform.get(domain).json()["hostname"])
        return seen == expected

    wait_until(all_seen, timeout=20, interval=0, what=f"answers from all of {sorted(expected)}")
    platform.swsctl("delete", name, "--wait", "--timeout", "60")


def test_env_and_volume_survive_update_and_delete_until_purged(
    platform: Platform, tmp_path: Path
) -> None:
    name = f"{platform.project}-vol"
    volume = f"{name}-volume"
    domain = "vol.e2e.test"
    spec: dict[str, Any] = {
        "name": name,
        "port": 8080,
        "domain": domain,
        "image": "sws/testapp:latest",
        "volumeMount": "/data",
        "env": [{"name": "GREETING", "value": "hej"}],
    }
    platform.apply(spec, tmp_path)

    first = platform.wait_json(domain, lambda body: True)
    assert first["env"]["GREETING"] == "hej"
    assert first["version"] == "v1"
    assert first["volume"] == {}
    written = platform.request(
        domain, "/write?name=note.txt", method="POST", body=b"kept across updates"
    )
    assert written.status == 201, written.body
    assert platform.get(domain).json()["volume"] == {"note.txt": "kept across updates"}

    # A new image replaces the container; the volume stays.
    platform.apply({**spec, "image": "sws/testapp:v2"}, tmp_path)
    after_update = platform.wait_json(domain, lambda body: body["version"] == "v2")
    assert after_update["hostname"] != first["hostname"]
    assert after_update["volume"] == {"note.txt": "kept across updates"}

    # Deleted without --purge: the containers go, the volume stays, and a new apply finds it.
    platform.swsctl("delete", name, "--wait", "--timeout", "60")
    assert platform.service_containers(name) == []
    assert platform.volume_exists(volume)
    platform.apply(spec, tmp_path)
    again = platform.wait_json(domain, lambda body: body["version"] == "v1")
    assert again["volume"] == {"note.txt": "kept across updates"}

    # --purge takes the volume too; the next service of that name starts empty.
    platform.swsctl("delete", name, "--purge", "--wait", "--timeout", "60")
    assert not platform.volume_exists(volume)
    platform.apply(spec, tmp_path)
    assert platform.wait_json(domain, lambda body: True)["volume"] == {}
    platform.swsctl("delete", name, "--purge", "--wait", "--timeout", "60")
    assert not platform.volume_exists(volume)
