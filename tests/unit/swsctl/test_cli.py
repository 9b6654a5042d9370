"""swsctl's behaviour that needs no API: flag checks and local validation come first."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from swsctl.cli import main

# Nothing listens here; a command that got as far as a request would say "cannot reach".
NOWHERE = "http://127.0.0.1:9"

VALID = """\
apiVersion: v1
spec:
  name: web
  port: 8081
  domain: web.example.com
  image: nginx:1
"""

README_EXAMPLE = """\
apiVersion: v1
spec:
  name: service-name
  port: 8081
  domain: example.com
  image: my-repo/my-image:somve-version
  volumeMount: /foo/bar
  env:
    - name: KEY_1
      value: foo
    - name: KEY_2
      bar: bar
"""


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(
        env={
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "SWS_HOST": None,
            "SWS_TOKEN": None,
            "SWS_API_DOMAIN": None,
        }
    )


def test_invalid_files_report_every_error_and_send_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    bad = tmp_path / "readme.yaml"
    bad.write_text(README_EXAMPLE)
    worse = tmp_path / "worse.json"
    worse.write_text('{"apiVersion": "v1", "spec": {"name": "x", "port": 0}}')
    result = runner.invoke(
        main, ["--host", NOWHERE, "--token", "t", "apply", str(good), str(bad), str(worse)]
    )
    assert result.exit_code == 1
    assert f"{bad}: spec.env[1]: unknown key 'bar'" in result.stderr
    assert f"{bad}: spec.env[1]: missing 'value'" in result.stderr
    assert f"{worse}: spec.port: 0 is not a port (1-65535)" in result.stderr
    assert f"{worse}: spec: missing 'domain'" in result.stderr
    assert "nothing applied" in result.stderr
    assert "cannot reach" not in result.stderr
    assert result.stdout == ""


def test_same_name_in_two_files_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(VALID)
    b.write_text(VALID.replace("web.example.com", "other.example.com"))
    result = runner.invoke(main, ["--host", NOWHERE, "--token", "t", "apply", str(a), str(b)])
    assert result.exit_code == 1
    assert f'{b}: spec.name: "web" is also declared in {a}' in result.stderr


def test_stdin_is_read_with_a_dash(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["--host", NOWHERE, "--token", "t", "apply", "-"], input="apiVersion: v2\n"
    )
    assert result.exit_code == 1
    assert "<stdin>:" in result.stderr


def test_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main, ["--host", NOWHERE, "--token", "t", "apply", str(tmp_path / "nope.yaml")]
    )
    assert result.exit_code == 1
    assert "nope.yaml: cannot read" in result.stderr


def test_unconfigured_is_a_usage_error_before_any_request(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ls"])
    assert result.exit_code == 2
    assert "swsctl configure" in result.stderr


@pytest.mark.parametrize("host", ["localhost:8080", "ftp://x"])
def test_bad_host_is_a_usage_error(runner: CliRunner, host: str) -> None:
    result = runner.invoke(main, ["--host", host, "--token", "t", "ls"])
    assert result.exit_code == 2
    assert "must look like http://host[:port]" in result.stderr


def test_bad_flags_are_usage_errors(runner: CliRunner) -> None:
    assert runner.invoke(main, ["ls", "-o", "xml"]).exit_code == 2
    assert runner.invoke(main, ["apply"]).exit_code == 2
    assert runner.invoke(main, ["delete"]).exit_code == 2
    assert runner.invoke(main, ["apply", "--timeout", "-1", "x.yaml"]).exit_code == 2


def test_api_domain_becomes_the_host_header() -> None:
    from swsctl.client import ApiClient

    client = ApiClient(NOWHERE, "t", api_domain="api.sws.localhost")
    assert client._session.headers["Host"] == "api.sws.localhost"
    assert client._session.headers["Authorization"] == "Bearer t"
    assert "Host" not in ApiClient(NOWHERE, "t")._session.headers
