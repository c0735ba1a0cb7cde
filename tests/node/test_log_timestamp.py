"""The log lines' timestamp (docs/performance.md, "The log line's timestamp") is structlog's
`TimeStamper(fmt="iso", utc=True)` to the character: for any instant from year 1 to 9999, taken in
any order through one stamper (its per-second cache), the text is `datetime.isoformat()` in UTC
with "Z", microseconds floored and left out when zero; and a node's log line carries it last."""

from __future__ import annotations

import datetime
import json
import logging
import re

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node import logs
from channel_node.logs import _UtcStamper

FIRST = int(datetime.datetime(1, 1, 1, tzinfo=datetime.UTC).timestamp())
LAST = int(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC).timestamp())
instants = st.tuples(st.integers(FIRST, LAST), st.integers(0, 999_999_999)) | st.tuples(
    st.integers(1_700_000_000, 1_700_000_003), st.sampled_from([0, 999, 1000, 999_999_999, 500_000_000])
)


def expected(second: int, fraction: int) -> str:
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=second, microseconds=fraction // 1000)
    return moment.isoformat().replace("+00:00", "Z")


@settings(max_examples=300, deadline=None)
@given(st.lists(instants, min_size=1, max_size=6))
def test_the_timestamp_is_structlogs_iso_utc_to_the_character(moments: list[tuple[int, int]]) -> None:
    stamper = _UtcStamper()
    for second, fraction in moments:
        assert stamper.format(second * 1_000_000_000 + fraction) == expected(second, fraction)


def test_now_matches_structlogs_own_stamper_and_a_line_ends_with_it(capsys) -> None:
    ours = _UtcStamper()(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", ours) and ours[:19] <= theirs[:19]
    capsys.readouterr()
    try:
        logs.configure("json", level=logging.INFO)
        structlog.get_logger("t").info("payment", charged="10")
        logs.flush()
        line = json.loads(capsys.readouterr().out.splitlines()[-1])
    finally:
        logs.configure("console")
    assert list(line) == ["charged", "event", "level", "timestamp"]
    assert datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo is not None
