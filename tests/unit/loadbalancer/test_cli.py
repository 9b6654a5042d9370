from __future__ import annotations

from click.testing import CliRunner

from loadbalancer.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_bad_backend_is_one_clear_line() -> None:
    code, output = run(
        "--listen", "0.0.0.0:80", "--admin", "127.0.0.1:9000", "--backend", "p=h:70000"
    )
    assert code == 2
    assert 'backend p: "70000" in "h:70000" is not a port (1-65535)' in output
    assert "Traceback" not in output


def test_bad_listen_address() -> None:
    code, output = run("--listen", "nowhere", "--admin", "127.0.0.1:9000", "--backend", "p=h:1")
    assert code == 2
    assert 'listen: "nowhere" is not HOST:PORT' in output


def test_settings_are_checked_before_anything_binds() -> None:
    code, output = run(
        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--backend", "p=h:1", "--fall", "0"
    )
    assert code == 2
    assert "fall: 0 is not a count (1-100)" in output


def test_backends_from_the_environment_are_validated_too() -> None:
    env = {
        "SWS_LB_LISTEN": "127.0.0.1:0",
        "SWS_LB_ADMIN": "127.0.0.1:0",
        "SWS_LB_BACKEND": "a=h:1 a=h:2",
    }
    code, output = run(env=env)
    assert code == 2
    assert 'backend: name "a" is given twice' in output
