from __future__ import annotations

from loadbalancer.logfmt import line


def test_event_word_then_fields() -> None:
    assert line("backend_down", backend="a", reason="check_failed") == (
        "backend_down backend=a reason=check_failed"
    )


def test_values_with_spaces_or_quotes_are_quoted() -> None:
    assert line("e", error="Connection refused") == 'e error="Connection refused"'
    assert line("e", v='say "hi"') == 'e v="say \\"hi\\""'
    assert line("e", v="") == 'e v=""'
    assert line("e", v="a\nb") == 'e v="a\\nb"'
