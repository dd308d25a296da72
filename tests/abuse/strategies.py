"""Hypothesis strategies for hostile input: names, crons, zones, intervals, times, JSON of the wrong shape.

Shared by the abuse tests. Every strategy draws from the kinds of bad input issue 6 names:
missing fields, wrong types, huge and unicode names, names that look like PromQL or
label injection, invalid or exotic crons, time zones valid and not, intervals of zero
or below.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st



def fuzz(examples: int) -> settings:
    """CI must be reproducible: a fixed derivation of examples, no example database on disk, no deadline
    (two shared cores make per-example timing meaningless)."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))

# Strings that break exposition formats, log lines, shells and parsers.
INJECTIONS = [
    'a"} 1\nfoo{x="',
    'x\\"} 1\nschedule_reconciler_target_up{target="evil"} 0\n',
    "\\",
    "\\\\n",
    "\n",
    "\r\n# TYPE evil gauge",
    '"',
    "{}",
    "} 1",
    "le=\"+Inf\"",
    "\x00",
    "\u202e",  # right-to-left override
    "\ud800",  # a lone surrogate: legal in JSON text, not encodable as UTF-8
    "\U0001f600",
    "名前",
    "%s%n%x",
    "${jndi:ldap://x}",
    "../../etc/passwd",
]

evil_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\\", '"', "\n", "語"]), st.integers(190, 1200)),
)


def joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


CRONS = [
    "0 9 * * *", "*/0 * * * *", "0 0 0 0 0", "0 0 31 2 *", "0 0 * * 8", "0-59/1 0-23 1-31 1-12 0-7",
    "@yearly", "@annually", "@hourly", "@reboot", "@every 5m", "@once", "0 0 9 * * *", "30 0 9 * * * 2030",
    "CRON_TZ=Europe/Paris 0 9 * * *", "TZ=UTC 0 9 * * *", "CRON_TZ=Not/AZone 0 9 * * *", "TZ= 0 9 * * *",
    "CRON_TZ=Etc/GMT+14 0 9 * * *", "0 9 * * MON-FRI", "0 9 L * ?", "0 9 15W * *", "0 9 * * 5#3",
    "1-1000000000 * * * *", "*/" + "9" * 40 + " * * * *", "", " ", "*", "* * * * * * * *", "0 9 * * *\n",
]
crons = st.one_of(st.sampled_from(CRONS), evil_text)

ZONES = ["UTC", "Etc/UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati",
         "Etc/GMT+12", "Not/AZone", "", " ", "UTC\n", "../../etc/localtime", "+05:30"]
zones = st.one_of(st.sampled_from(ZONES), evil_text)

intervals = st.one_of(
    st.sampled_from([0.0, -1.0, -86400.0, 1e-9, 1e308, 2.0 ** 63, float("inf"), float("-inf"), float("nan")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
)

aware_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                           timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                                                      timezone(timedelta(hours=-12)), timezone(timedelta(minutes=345))]))
naive_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))

TIME_TEXT = ["2026-11-21T10:00:00Z", "2026-11-21T10:00:00+14:00", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:59:59-12:00", "1970-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "yesterday", "",
             "2026-11-21 10:00:00", "2026-11-21T10:00:00.123456789Z", "-0001-01-01T00:00:00Z"]
time_text = st.one_of(st.sampled_from(TIME_TEXT), naive_times.map(datetime.isoformat),
                      aware_times.map(datetime.isoformat), evil_text)

# Any JSON value: what a field of the wrong type may hold.
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 64), max_value=2 ** 64),
              st.floats(allow_nan=False, allow_infinity=False), evil_text),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=8,
)


def maybe(field: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """A field as it should be, of a wrong type, or missing (the MISSING marker)."""
    return st.one_of(field, field, wrong, st.just(MISSING))


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def drop_missing(value: Any) -> Any:
    """Remove every MISSING field from nested dicts (a missing key, not a null one)."""
    if isinstance(value, dict):
        return {k: drop_missing(v) for k, v in value.items() if v is not MISSING}
    if isinstance(value, list):
        return [drop_missing(v) for v in value if v is not MISSING]
    return value
