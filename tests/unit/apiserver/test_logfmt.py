from __future__ import annotations

from apiserver.logfmt import line


def test_plain_values_stay_bare() -> None:
    assert (
        line("service.applied", name="web", generation=3) == "service.applied name=web generation=3"
    )


def test_values_that_would_break_the_line_are_quoted() -> None:
    assert line("x", error='a "b"\nc', empty="") == 'x error="a \\"b\\"\\nc" empty=""'
