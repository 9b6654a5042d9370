from __future__ import annotations

from datetime import UTC, datetime

from swsctl.output import age, table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_age_uses_the_largest_whole_unit() -> None:
    assert age("2024-05-01T11:59:18Z", NOW) == "42s"
    assert age("2024-05-01T11:55:00Z", NOW) == "5m"
    assert age("2024-05-01T09:00:00Z", NOW) == "3h"
    assert age("2024-04-19T12:00:00Z", NOW) == "12d"
    assert age("2024-05-01T12:00:05Z", NOW) == "0s"  # clock skew never shows negative ages
    assert age(None, NOW) == "-"
    assert age("yesterday", NOW) == "-"


def test_table_aligns_columns() -> None:
    text = table(["NAME", "READY"], [["web", "1/1"], ["a-longer-name", "0/2"]])
    assert text.splitlines() == [
        "NAME            READY",
        "web             1/1",
        "a-longer-name   0/2",
    ]
