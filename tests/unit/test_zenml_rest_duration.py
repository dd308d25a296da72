"""ZenML's REST API sends `interval_second` as an ISO-8601 duration made by pydantic.

The parser is checked against pydantic itself, the serializer ZenML's server
uses, in both directions: what pydantic emits for any timedelta parses back to
the same seconds, and any duration pydantic accepts parses to what pydantic reads.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from providers.zenml_rest import original_name, parse_iso_duration

TIMEDELTA = TypeAdapter(timedelta)


@given(st.timedeltas(min_value=timedelta(days=-3000), max_value=timedelta(days=3000)))
def test_what_zenml_emits_parses_back_to_the_same_seconds(interval: timedelta) -> None:
    emitted = TIMEDELTA.dump_python(interval, mode="json")
    assert parse_iso_duration(emitted) == interval.total_seconds()


@given(st.floats(min_value=0.000001, max_value=10 * 365 * 86400.0, allow_nan=False))
def test_float_seconds_as_stored_survive_the_round_trip_through_the_api(seconds: float) -> None:
    # The server turns the float column into a timedelta (whole microseconds) and then
    # into ISO-8601: the parser must land on that timedelta's seconds exactly.
    as_served = timedelta(seconds=seconds)
    assert parse_iso_duration(TIMEDELTA.dump_python(as_served, mode="json")) == as_served.total_seconds()


_INTEGER = st.integers(min_value=0, max_value=500).map(str)
_FRACTION = st.decimals(min_value=0, max_value=500, places=3, allow_nan=False, allow_infinity=False).map(str)


@given(
    sign=st.sampled_from(["", "-"]),
    date=st.dictionaries(st.sampled_from("YMWD"), _INTEGER, max_size=4),
    time=st.dictionaries(st.sampled_from("HMS"), _INTEGER, max_size=3),
    last_fraction=st.none() | _FRACTION,
)
def test_any_duration_pydantic_reads_parses_to_the_same_seconds(
    sign: str, date: dict[str, str], time: dict[str, str], last_fraction: str | None
) -> None:
    date_parts = [[u, date[u]] for u in "YMWD" if u in date]
    time_parts = [[u, time[u]] for u in "HMS" if u in time]
    last = (time_parts or date_parts or [None])[-1]
    if last is not None and last_fraction is not None:
        last[1] = last_fraction  # ISO 8601 allows a fraction on the smallest unit only
    text = f"{sign}P" + "".join(n + u for u, n in date_parts)
    if time_parts:
        text += "T" + "".join(n + u for u, n in time_parts)
    if last is None:
        with pytest.raises(ValueError):
            parse_iso_duration(text)
        return
    assert parse_iso_duration(text) == pytest.approx(TIMEDELTA.validate_python(text).total_seconds(), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0S", 0.0),
        ("PT6H", 21600.0),
        ("PT15M", 900.0),
        ("PT0.5S", 0.5),
        ("P1DT1H", 90000.0),
        ("P21D", 1814400.0),
        ("P1Y35DT1H1M1.25S", 400 * 86400 + 3661.25),
        ("-PT1S", -1.0),
        ("PT1,5S", 1.5),
    ],
)
def test_known_durations(text: str, seconds: float) -> None:
    assert parse_iso_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "-P", "P1DT", "6h", "PT1H2", "P-1D", "PT1S1H", "1:00:00", "PTS"])
def test_malformed_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_duration(text)


def test_the_archive_suffix_is_removed_only_from_archived_rows() -> None:
    suffixed = "nightly_etl_3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9"
    assert original_name(suffixed, archived=True) == "nightly_etl"
    assert original_name(suffixed, archived=False) == suffixed
    assert original_name("nightly_etl", archived=True) == "nightly_etl"
    assert original_name("a_b_3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9", archived=True) == "a_b"
