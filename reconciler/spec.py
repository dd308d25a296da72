"""Normalizing schedule specs so that equal schedules compare equal.

Orchestrators show the same cron in different clothes: KFP adds a seconds field,
Kubernetes and Vertex carry `CRON_TZ=`/`TZ=` prefixes, Airflow accepts macros
and month/day names. ZenML crons are UTC, so a UTC prefix equals none.
Normalizing is total: an unparsable cron is kept as text, never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime

from reconciler.model import LiveSchedule, RegistrySchedule

_UTC_ZONES = {"utc", "etc/utc", "uct", "etc/uct", "gmt", "etc/gmt", "zulu", "etc/zulu", "universal",
              "etc/universal", "gmt0", "etc/gmt0", "gmt+0", "etc/gmt+0", "gmt-0", "etc/gmt-0", "z"}
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_MONTHS = {m: str(i) for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {d: str(i) for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELD = re.compile(r"^[0-9a-z*/,\-?]+$")
_ZONE_PREFIX = re.compile(r"^(?:cron_tz|tz)=(\S+)\s+(.*)$", re.IGNORECASE)
INTERVAL_TOLERANCE = 1e-3  # seconds: ZenML stores float seconds, APIs round


@dataclass(frozen=True)
class Cron:
    """A cron in a canonical form: five fields, UTC unless `zone` says otherwise."""

    text: str  # canonical fields, or the stripped input when `valid` is False
    zone: str | None = None  # None means UTC
    valid: bool = True

    def __str__(self) -> str:
        prefix = f"CRON_TZ={self.zone} " if self.zone else ""
        return prefix + self.text


@lru_cache(maxsize=65536)  # a registry holds few distinct crons; each is compared many times
def normalize_cron(expression: str) -> Cron:
    text = " ".join(expression.split())
    zone: str | None = None
    match = _ZONE_PREFIX.match(text)
    if match:
        zone = None if match.group(1).lower() in _UTC_ZONES else match.group(1)
        text = match.group(2)
    lowered = text.lower()
    if lowered in _MACROS:
        return Cron(_MACROS[lowered], zone)
    fields = lowered.split(" ")
    if len(fields) == 6 and fields[0] == "0":
        fields = fields[1:]  # KFP's (robfig) leading seconds field, at second zero
    if len(fields) != 5 or not all(_FIELD.match(f) for f in fields):
        return Cron(text, zone, valid=False)
    minute, hour, dom, month, dow = fields
    month = _replace_names(month, _MONTHS)
    dow = _replace_names(dow, _DAYS)
    dow = re.sub(r"(?<![0-9])7(?![0-9])", "0", dow)  # both 0 and 7 mean Sunday
    canonical = [_canonical_field(f) for f in (minute, hour, dom, month, dow)]
    return Cron(" ".join(canonical), zone)


def _replace_names(field: str, names: dict[str, str]) -> str:
    return re.sub(r"[a-z]{3}", lambda m: names.get(m.group(0), m.group(0)), field)


def _canonical_field(field: str) -> str:
    field = field.replace("?", "*")
    field = re.sub(r"\b0+(\d)", r"\1", field)  # "05" == "5"
    return "*" if field == "*/1" else field


def describe_interval(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def spec_differences(schedule: RegistrySchedule, live: LiveSchedule) -> list[str]:
    """How the live spec differs from ZenML's, in words; empty when they agree.

    Start and end are compared only where ZenML sets them and the live side
    shows them (Vertex defaults a start to its creation; Airflow shows none).
    """
    differences: list[str] = []
    if schedule.cron_expression is not None:
        want = normalize_cron(schedule.cron_expression)
        if live.cron is None:
            got = f"interval {describe_interval(live.interval_seconds)}" if live.interval_seconds else "no schedule"
            differences.append(f"cron {schedule.cron_expression!r} in ZenML, {got} live")
        elif schedule.cron_expression != live.cron:
            have = normalize_cron(live.cron)
            if want != have:
                invalid = "" if want.valid else " (unparsable in ZenML)"
                differences.append(f"cron {schedule.cron_expression!r}{invalid} in ZenML, {live.cron!r} live")
    elif schedule.interval_seconds is not None:
        want_s = schedule.interval_seconds
        if live.interval_seconds is None:
            got = f"cron {live.cron!r}" if live.cron else "no schedule"
            differences.append(f"interval {describe_interval(want_s)} in ZenML, {got} live")
        elif abs(live.interval_seconds - want_s) > INTERVAL_TOLERANCE:
            differences.append(
                f"interval {describe_interval(want_s)} in ZenML, {describe_interval(live.interval_seconds)} live")
    for label, want_t, have_t in (("start", schedule.start_time, live.start_time),
                                  ("end", schedule.end_time, live.end_time)):
        if want_t is not None and have_t is not None and not _same_second(want_t, have_t):
            differences.append(f"{label} {_iso(want_t)} in ZenML, {_iso(have_t)} live")
    return differences


def same_spec(schedule: RegistrySchedule, live: LiveSchedule) -> bool:
    return not spec_differences(schedule, live)


def _same_second(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 1


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
