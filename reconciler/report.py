"""A cycle's outcome as data, and its two renderings: `plan` JSON (the contract) and text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from reconciler.model import Drift, DriftKind, TargetDiff
from reconciler.policy import Candidate

Status = Literal["ok", "error"]


@dataclass(frozen=True)
class ActionResult:
    """One cleanup action of a cycle, dry-run or real: `cleanup_actions_total` counts these."""

    native_id: str
    live_name: str
    action: str  # delete | pause
    outcome: str  # dry_run | succeeded | failed | already_gone | skipped_changed
    audit_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class RegistryReport:
    status: Status
    schedules: int | None
    error: str | None = None


@dataclass(frozen=True)
class TargetReport:
    name: str
    flavor: str
    endpoint: str
    status: Status
    error: str | None = None
    diff: TargetDiff | None = None  # None when the target's drift is unknown this cycle
    candidates: tuple[Candidate, ...] = ()
    actions: tuple[ActionResult, ...] = ()
    list_seconds: float | None = None
    diff_cpu_seconds: float | None = None  # CPU of this thread only: listings run beside it

    @property
    def drifted(self) -> bool:
        return self.diff is not None and bool(self.diff.drift)


@dataclass(frozen=True)
class CycleReport:
    cycle: int
    generated_at: datetime
    registry: RegistryReport
    targets: tuple[TargetReport, ...] = field(default_factory=tuple)
    duration_seconds: float = 0.0
    registry_seconds: float = 0.0

    @property
    def result(self) -> Literal["success", "partial", "failed"]:
        if self.registry.status == "error":
            return "failed"
        failed = sum(1 for t in self.targets if t.status == "error")
        if failed == 0:
            return "success"
        return "failed" if failed == len(self.targets) else "partial"

    @property
    def exit_code(self) -> int:
        """`plan`'s contract: 0 no drift, 1 drift, 2 error (unknown is not 'no drift')."""
        if self.result != "success":
            return 2
        return 1 if any(t.drifted for t in self.targets) else 0


def to_json(report: CycleReport) -> dict[str, Any]:
    return {
        "generated_at": _iso(report.generated_at),
        "cycle": report.cycle,
        "registry": {"status": report.registry.status, "schedules": report.registry.schedules,
                     "error": report.registry.error},
        "targets": [_target_json(t) for t in report.targets],
    }


def _target_json(target: TargetReport) -> dict[str, Any]:
    diff = target.diff
    body: dict[str, Any] = {"name": target.name, "flavor": target.flavor, "status": target.status,
                            "error": target.error}
    candidates = [_candidate_json(c) for c in target.candidates]
    actions = [{"native_id": a.native_id, "live_name": a.live_name, "action": a.action, "outcome": a.outcome,
                "audit_id": a.audit_id, "error": a.error} for a in target.actions]
    if diff is None:
        # Unknown drift; the candidates are the last known ones, held back by the guard.
        body.update(counts=None, in_sync_ratio=None, drift=[], candidates=candidates, actions=actions)
        return body
    body["counts"] = {"expected": len(diff.expected), "managed": len(diff.managed),
                      "unmanaged": len(diff.unmanaged), "in_sync": diff.in_sync}
    body["in_sync_ratio"] = round(diff.in_sync_ratio, 4)
    body["drift"] = [_drift_json(d) for d in diff.drift]
    body["candidates"] = candidates
    body["actions"] = actions
    return body


def _candidate_json(c: Candidate) -> dict[str, Any]:
    return {"native_id": c.native_id, "live_name": c.live_name, "kind": c.kind.value, "action": c.action,
            "stage": c.stage, "reason": c.reason, "blocked_by": c.blocked_by}


def _drift_json(drift: Drift) -> dict[str, Any]:
    return {
        "kind": drift.kind.value,
        "schedule": drift.schedule.name if drift.schedule else None,
        "schedule_id": drift.schedule.id if drift.schedule else None,
        "native_id": drift.live.native_id if drift.live else None,
        "live_name": drift.live.name if drift.live else None,
        "detail": drift.detail,
    }


def dumps(report: CycleReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=False)


def to_text(report: CycleReport) -> str:
    lines: list[str] = []
    registry = report.registry
    if registry.status == "ok":
        lines.append(f"registry: ok, {registry.schedules} schedules")
    else:
        lines.append(f"registry: ERROR {registry.error}")
    for target in report.targets:
        lines.append("")
        if target.diff is None:
            lines.append(f"{target.name} ({target.flavor}): ERROR {target.error} (drift unknown this cycle)")
            lines.extend(_cleanup_lines(target))
            continue
        diff = target.diff
        lines.append(
            f"{target.name} ({target.flavor}): in sync {diff.in_sync}/{diff.items} "
            f"({diff.in_sync_ratio:.0%}), expected {len(diff.expected)}, managed {len(diff.managed)}, "
            f"unmanaged {len(diff.unmanaged)}"
        )
        if diff.drift:
            lines.extend(_table(
                ["KIND", "ZENML SCHEDULE", "LIVE", "DETAIL"],
                [[d.kind.value, d.schedule.name if d.schedule else "-", d.live.name if d.live else "-", d.detail]
                 for d in _sorted(diff.drift)],
            ))
        else:
            lines.append("  no drift")
        lines.extend(_cleanup_lines(target))
    return "\n".join(lines)


def _cleanup_lines(target: TargetReport) -> list[str]:
    if not target.candidates:
        return []
    return ["  cleanup plan:", *_table(["LIVE", "ACTION", "STAGE", "REASON"],
                                       [[c.live_name, c.action, c.stage, c.reason] for c in target.candidates])]


def _sorted(drift: Sequence[Drift]) -> list[Drift]:
    order = list(DriftKind)
    return sorted(drift, key=lambda d: (order.index(d.kind), d.live.name if d.live else d.schedule.name if d.schedule else ""))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [min(48, max(len(str(r[i])) for r in [header, *rows])) for i in range(len(header) - 1)]
    out = []
    for row in [header, *rows]:
        cells = [str(c)[:48].ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
