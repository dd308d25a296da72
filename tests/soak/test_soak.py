"""The soak (issue 6, item 2): thousands of cycles with random drift and random faults, cleanup approved.

One in-process daemon (built and stepped cycle by cycle as tests/faults/test_fault_matrix.py
does) over the four emulators and a private copy of a ZenML store file written by real
ZenML, with cleanup enabled and approved (`dry_run_cycles: 2`, `grace_period: 0s`, a
mix of `delete` and `pause` targets, protection by name glob, label and per-target
glob). Before each cycle a seeded `random.Random` (seed printed; `SOAK_SEED` replays
it) makes drift changes (tests/soak/world.py) and sets faults on listings, on the
get/delete/pause requests, or on the registry; the approval is flipped off and on
through config reloads now and then. After each cycle the suite proves:

- no wrong action: every mutating request the emulators logged is a `delete`/`pause`
  of a live schedule that the independent oracle (world.py, never reconciler/ code)
  called an eligible orphan with at least `dry_run_cycles` complete, unchanged
  cycles of evidence, made while the approval was on;
- the audit log is complete: each (target, live schedule) mutated in a cycle has
  exactly one completed audit record saying the request was sent, every such record
  has its request, none stays pending; an action that reports `succeeded` shows in
  the emulator's state;
- a listing or registry fault that must fail makes the target unknown and gets no
  action on it; a cycle without a fault reconciles the target;
- the `drift_info` series of a reconciled target name only schedules live or in the
  registry at that cycle (no stale series) and stay within their count; the other
  series stay under a fixed bound;
- memory and open file descriptors measured after a warm-up and at the end are flat.

`SOAK_CYCLES` (default 600, about 4 minutes on two shared cores) sets the length: `make soak` runs the long form. The
figures of the last full run go to tests/soak/RESULTS.md, which the README quotes.
"""

from __future__ import annotations

import gc
import os
import random
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from providers.emulators.base import Fault
from providers.emulators.sandbox import Emulators, default_store
from reconciler.cli import build_daemon
from reconciler.loop import Daemon
from reconciler.report import CycleReport
from reconciler.state import AuditRecord
from tests.integration.cleanup_support import Setup, component_ids, emulated, write_config
from tests.soak.world import MIN_UNMANAGED, PROTECT_LABEL, TARGETS, Truth, World

pytestmark = pytest.mark.integration

CYCLES = int(os.environ.get("SOAK_CYCLES") or 600)
SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**32))
DRY_RUN_CYCLES = 2
RESULTS = Path(__file__).with_name("RESULTS.md")

# Short enough that a faulted cycle costs about a second; every listing pages three items at a time.
TIMEOUT, LIST_DEADLINE, MAX_RETRIES, PAGE_SIZE, REGISTRY_TIMEOUT = 0.4, 1.5, 1, 3, 0.3
HANG = TIMEOUT + 0.2
P_REGISTRY_FAULT, P_LISTING_FAULT, P_ACTION_FAULT, P_APPROVAL_FLIP = 0.02, 0.07, 0.08, 0.01

LIST_OP = {"vertex": "list_schedules", "kfp": "list_schedules", "k8s": "list_schedules", "airflow": "list_dags"}
ACTION_OPS = {"vertex": ("get_schedule", "delete_schedule", "pause_schedule", "get_operation"),
              "kfp": ("get_schedule", "pause_schedule", "delete_schedule"),
              "k8s": ("get_schedule", "patch_schedule", "delete_schedule"),
              "airflow": ("get_dag", "patch_dag", "delete_dag")}
EMULATOR = {"vertex": "vertex", "kfp": "kubeflow", "k8s": "kubernetes", "airflow": "airflow"}


@dataclass(frozen=True)
class ListingFault:
    name: str
    fault: Fault
    certain: bool  # True: the listing must fail; False: it may recover (retries, a little latency)


LISTING_FAULTS = [
    ListingFault("5xx: 503 on every listing request", Fault(status=503), True),
    ListingFault("429 with Retry-After on every listing request", Fault(status=429, retry_after=0), True),
    ListingFault("401 on the listing", Fault(status=401), True),
    ListingFault("403 on the listing", Fault(status=403), True),
    ListingFault(f"timeout: listing requests hang {HANG:g}s", Fault(hang=HANG), True),
    ListingFault("malformed listing body", Fault(malformed=True), True),
    ListingFault("listing fails half way (page 2 on: 500)", Fault(status=500, after=1), True),
    ListingFault("expired page token (page 2 on: 400 / k8s 410)", Fault(status=400, after=1), True),
    ListingFault("transient 503 (one request, retried)", Fault(status=503, times=1), False),
    ListingFault("latency 30 ms per listing request", Fault(latency=0.03), False),
]
ACTION_FAULTS = [
    ("5xx on every request", Fault(status=503)),
    ("one 500, then healthy", Fault(status=500, times=1)),
    ("429 with Retry-After, once", Fault(status=429, retry_after=0, times=1)),
    (f"hang {HANG:g}s once (the request was served, the answer lost)", Fault(hang=HANG, times=1)),
    ("malformed answer", Fault(malformed=True)),
    ("latency 30 ms", Fault(latency=0.03)),
]
REGISTRY_FAULTS = ("registry: store file missing", "registry: store locked (exclusive lock held through the cycle)")


@dataclass
class Figures:
    cycles: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)
    actions: int = 0  # mutating (target, live schedule) pairs: each one an action the daemon sent
    outcomes: dict[str, int] = field(default_factory=dict)
    eligible_acted_on: int = 0
    wrong: list[str] = field(default_factory=list)
    audit_real: int = 0
    audit_dry_run: int = 0
    lost: int = 0
    duplicated: int = 0
    unmatched_records: int = 0
    unknown_when_faulted: int = 0
    approval_off_cycles: int = 0
    max_series: int = 0
    max_detail_series: int = 0
    max_fixed_series: int = 0
    memory: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # any other broken promise

    def bump(self, table: dict[str, int], key: str, by: int = 1) -> None:
        table[key] = table.get(key, 0) + by


class Soak:
    def __init__(self, tmp: Path, emulators: Emulators, setup: Setup, store: Path, rng: random.Random) -> None:
        self.tmp, self.e, self.setup, self.store, self.rng = tmp, emulators, setup, store, rng
        self.world = World(emulators, store, component_ids(), rng)
        self.daemon: Daemon | None = None
        self.figures = Figures()
        self.approve = True
        self.approve_off_since: int | None = None
        self.last_audit_id = 0

    def emulator(self, target: str) -> Any:
        return getattr(self.e, EMULATOR[target])

    def write_config(self) -> None:
        """A new file swapped in (a new inode, as a ConfigMap update gives): the daemon reloads it."""
        staging = self.setup.path.with_suffix(".tmp")
        staging.write_text(yaml.safe_dump(self.setup.raw), encoding="utf-8")
        os.replace(staging, self.setup.path)

    # -- one cycle --------------------------------------------------------------------------------------------

    def step(self, cycle: int) -> None:
        assert self.daemon is not None
        f = self.figures
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            self.world.change(cycle)
        self._maybe_flip_approval(cycle)
        rows = self.world.rows_by_target()  # before a registry fault moves or locks the store
        registry_fault, listing, lift = self._inject()
        truth = {t: self.world.truth(t) for t in TARGETS}
        # The oracle's verdict for every live schedule the driver made, as the cycle starts.
        allowed: dict[tuple[str, str], str] = {}
        eligible_now: dict[tuple[str, str], bool] = {}
        for key, item in self.world.items.items():
            ok = self.world.eligible(item, truth[item.target])
            eligible_now[key] = ok
            if (ok and self.approve and item.credit >= DRY_RUN_CYCLES
                    and self.world.key(item, truth[item.target]) == item.streak_key):
                allowed[key] = self.world.action(item.target, truth[item.target][item.native_id])

        report = self.daemon.run_cycle()
        for undo in lift:
            undo()
        assert report is not None, f"cycle {cycle} crashed (seed {SEED})"
        f.cycles += 1
        f.bump(f.results, report.result)
        status = {t.name: t.status for t in report.targets}
        after = {t: self.world.truth(t) for t in TARGETS}

        mutated: dict[tuple[str, str], set[str]] = {}
        for target in TARGETS:
            for verb, native_id in _mutations(target, self.emulator(target)):
                mutated.setdefault((target, native_id), set()).add(verb)
            self.emulator(target).log.clear()
            self.emulator(target).faults.clear()

        # No wrong action.
        for (target, native_id), verbs in sorted(mutated.items()):
            want = allowed.get((target, native_id))
            if want is None or verbs != {want}:
                item = self.world.items.get((target, native_id))
                f.wrong.append(f"cycle {cycle}: {sorted(verbs)} on {target} {native_id}: "
                               + _why_not(item, eligible_now.get((target, native_id)), self.approve, want))
            else:
                f.eligible_acted_on += 1
        f.actions += len(mutated)

        # Health: a listing or registry fault that must fail leaves the target unknown and untouched.
        for target in TARGETS:
            touched = any(t == target for t, _ in mutated)
            must_fail = registry_fault is not None or (target in listing and listing[target].certain)
            if must_fail:
                f.unknown_when_faulted += status[target] == "error"
                if status[target] != "error" or touched:
                    f.problems.append(f"cycle {cycle}: {target} faulted ({registry_fault or listing[target].name}) "
                                      f"but status {status[target]}, acted on: {touched}")
            elif target not in listing and status[target] != "ok":
                f.problems.append(f"cycle {cycle}: {target} had no fault but was not reconciled: "
                                  f"{next(t.error for t in report.targets if t.name == target)}")

        self._check_audit(cycle, mutated, after)
        self._check_series(cycle, report, truth, rows)

        # The oracle's evidence: one more cycle for each unchanged eligible orphan of a reconciled target;
        # a complete cycle that shows it ineligible or changed starts it over. Unknown cycles count nothing.
        for key, item in self.world.items.items():
            if status[item.target] != "ok":
                continue
            if not eligible_now.get(key, False):
                item.streak_key, item.credit = None, 0
                continue
            seen = self.world.key(item, truth[item.target])
            if seen == item.streak_key:
                item.credit += 1
            else:
                item.streak_key, item.credit = seen, 1
        self.world.forget_gone(cycle, after)

    def _maybe_flip_approval(self, cycle: int) -> None:
        off_long = self.approve_off_since is not None and cycle - self.approve_off_since >= 12
        if off_long or self.rng.random() < P_APPROVAL_FLIP:
            self.approve = not self.approve
            self.approve_off_since = None if self.approve else cycle
            self.setup.raw["cleanup"]["approve"] = self.approve
            self.write_config()
            self.figures.bump(self.figures.faults, "approval flipped by a config reload")
        if not self.approve:
            self.figures.approval_off_cycles += 1

    def _inject(self) -> tuple[str | None, dict[str, ListingFault], list[Any]]:
        f = self.figures
        lift: list[Any] = []
        if self.rng.random() < P_REGISTRY_FAULT:
            name = self.rng.choice(REGISTRY_FAULTS)
            f.bump(f.faults, name)
            if "missing" in name:
                moved = self.store.with_suffix(".moved")
                self.store.rename(moved)
                lift.append(lambda: moved.rename(self.store))
            else:
                lock = sqlite3.connect(self.store, isolation_level=None, check_same_thread=False)
                lock.execute("BEGIN EXCLUSIVE")

                def unlock() -> None:
                    lock.execute("ROLLBACK")
                    lock.close()
                lift.append(unlock)
            return name, {}, lift
        listing: dict[str, ListingFault] = {}
        for target in TARGETS:
            if self.rng.random() < P_LISTING_FAULT:
                fault = self.rng.choice(LISTING_FAULTS)
                if target == "k8s" and fault.name.startswith("expired"):
                    fault = ListingFault(fault.name, Fault(status=410, after=1), True)
                if target == "airflow" and fault.name.startswith("expired"):
                    continue  # offset paging: there is no token to expire
                self.emulator(target).faults.set(LIST_OP[target], fault.fault)
                listing[target] = fault
                f.bump(f.faults, f"listing: {fault.name}")
            if self.rng.random() < P_ACTION_FAULT:
                operation = self.rng.choice(ACTION_OPS[target])
                name, fault = self.rng.choice(ACTION_FAULTS)
                self.emulator(target).faults.set(operation, fault)
                f.bump(f.faults, f"action requests: {name}")
        return None, listing, lift

    # -- the audit log ------------------------------------------------------------------------------------

    def _check_audit(self, cycle: int, mutated: dict[tuple[str, str], set[str]], after: dict[str, Truth]) -> None:
        assert self.daemon is not None
        f = self.figures
        store = self.daemon.store
        pending = store.pending_actions()
        if pending:
            f.problems.append(f"cycle {cycle}: {len(pending)} audit records left pending")
        new = [r for r in store.history(include_dry_run=True, limit=500) if r.id > self.last_audit_id]
        if len(new) >= 500:
            f.problems.append(f"cycle {cycle}: 500 or more audit records in one cycle")
        if new:
            self.last_audit_id = max(r.id for r in new)
        sent: dict[tuple[str, str], list[AuditRecord]] = {}
        for record in new:
            if record.dry_run:
                f.audit_dry_run += 1
                continue
            f.audit_real += 1
            f.bump(f.outcomes, record.outcome or "none")
            if record.requested_at is not None:
                sent.setdefault((record.target, record.native_id), []).append(record)
            if record.outcome == "succeeded":
                state = after[record.target].get(record.native_id)
                done = state is None if record.action == "delete" else (
                    state is None or not World.enabled(record.target, state))
                if not done:
                    f.problems.append(f"cycle {cycle}: audit record {record.id} says {record.action} succeeded, "
                                      f"but {record.target} shows {state}")
        for key in mutated:
            records = sent.get(key, [])
            if not records:
                f.lost += 1
                f.problems.append(f"cycle {cycle}: {key} was mutated with no audit record of the request")
            elif len(records) > 1:
                f.duplicated += 1
                f.problems.append(f"cycle {cycle}: {key} has {len(records)} audit records for one action")
        for key in sent:
            if key not in mutated:
                f.unmatched_records += 1
                f.problems.append(f"cycle {cycle}: audit record for {key} says the request was sent; none arrived")

    # -- the metrics' series ------------------------------------------------------------------------------

    def _check_series(self, cycle: int, report: CycleReport, truth: dict[str, Truth], rows: dict[str, int]) -> None:
        assert self.daemon is not None
        f = self.figures
        total = detail = 0
        by_target: dict[str, list[str]] = {t: [] for t in TARGETS}
        for family in text_string_to_metric_families(self.daemon.metrics.exposition().decode()):
            for sample in family.samples:
                total += 1
                if sample.name == "schedule_reconciler_drift_info":
                    detail += 1
                    by_target[sample.labels["target"]].append(sample.labels["native_id"])
        f.max_series = max(f.max_series, total)
        f.max_detail_series = max(f.max_detail_series, detail)
        f.max_fixed_series = max(f.max_fixed_series, total - detail)
        if total - detail > FIXED_SERIES_BOUND:
            f.problems.append(f"cycle {cycle}: {total - detail} series besides drift_info (> {FIXED_SERIES_BOUND})")
        for target in report.targets:
            if target.status != "ok":
                continue  # an unknown target keeps its last values, by design
            named = by_target[target.name]
            stale = [n for n in named if n and n not in truth[target.name]]
            if stale:
                f.problems.append(f"cycle {cycle}: stale drift_info series on {target.name}: {stale[:3]}")
            # One per drifted schedule: each names a live schedule or a registry row of the target.
            if len(named) > len(truth[target.name]) + rows[target.name]:
                f.problems.append(f"cycle {cycle}: {len(named)} drift_info series on {target.name}, more than its "
                                  f"{len(truth[target.name])} live schedules and {rows[target.name]} registry rows")


# Every series but drift_info is keyed by target and a fixed set of kinds, stages, outcomes,
# operations and status codes: 4 targets need about 350 (the soak reports the real maximum).
FIXED_SERIES_BOUND = 600


def _mutations(target: str, emulator: Any) -> Iterator[tuple[str, str]]:
    """(verb, native id) of every mutating request the emulator logged."""
    for r in emulator.log.mutations():
        if target == "vertex":
            verb = {"delete_schedule": "delete", "pause_schedule": "pause"}.get(r.operation, r.operation)
            yield verb, str((r.body or {}).get("name"))
        elif target == "kfp":
            match = re.search(r"/recurringruns/([^/:]+)(?::(\w+))?$", r.path)
            native_id = match.group(1) if match else r.path
            verb = {"disable": "pause", "enable": "resume"}.get(match.group(2) if match else "", r.method.lower())
            yield verb, native_id
        elif target == "k8s":
            match = re.search(r"/namespaces/([^/]+)/cronjobs/([^/]+)$", r.path)
            native_id = f"{match.group(1)}/{match.group(2)}" if match else r.path
            yield _patch_verb(r.method, (r.body or {}).get("spec", {}).get("suspend") if isinstance(r.body, dict)
                              else None), native_id
        else:
            native_id = r.path.rsplit("/", 1)[-1]
            yield _patch_verb(r.method, r.body.get("is_paused") if isinstance(r.body, dict) else None), native_id


def _patch_verb(method: str, paused: Any) -> str:
    if method == "DELETE":
        return "delete"
    if method == "PATCH":
        return {True: "pause", False: "resume"}.get(paused, "patch")
    return method.lower()


def _why_not(item: Any, eligible: bool | None, approve: bool, want: str | None) -> str:
    if item is None:
        return "not a live schedule the driver made and still tracks"
    if not item.zenml:
        return "unmanaged (not made by ZenML)"
    if item.protected:
        return "protected"
    if not approve:
        return "cleanup.approve was false"
    if not eligible:
        return f"not an eligible orphan (bound to {item.row})"
    if want is not None:
        return f"the oracle expected {want}"
    return f"only {item.credit} unchanged complete cycles of evidence (< {DRY_RUN_CYCLES})"


def _rss_kb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


def _memory() -> dict[str, float]:
    gc.collect()
    return {"rss_mb": _rss_kb() / 1024, "fds": float(len(os.listdir("/proc/self/fd"))),
            "gc_objects": float(len(gc.get_objects()))}


def _types() -> Counter[str]:
    """Live Python objects by type: names what grew when the heap is not flat."""
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _grown(before: Counter[str], after: Counter[str]) -> list[tuple[str, int]]:
    return sorted(((k, after[k] - before[k]) for k in after if after[k] > before[k]), key=lambda kv: -kv[1])[:8]


# Flat means: file descriptors back where they were (a few may be mid-use by a pool), and no
# per-cycle growth of the Python heap or RSS that a leak of one small object graph per cycle
# (a session, a report, a list entry) would show. Bounds are per cycle after the warm-up.
FD_SLACK = 4
GC_OBJECTS_PER_CYCLE = 25.0
RSS_KB_PER_CYCLE = 12.0
RSS_FLOOR_MB = 12.0  # allocator noise: arenas freed late, caches filled once


@pytest.fixture()
def soak(tmp_path: Path) -> Iterator[Soak]:
    print(f"\nsoak: seed {SEED} (replay: SOAK_SEED={SEED}), {CYCLES} cycles")
    rng = random.Random(SEED)
    store = tmp_path / "zenml.db"
    shutil.copy(default_store(), store)
    setup = write_config(tmp_path, cleanup={
        "enabled": True, "approve": True, "dry_run_cycles": DRY_RUN_CYCLES, "grace_period": "0s",
        "max_actions_per_cycle": 3, "max_fraction": 1.0,
        "protect": {"names": ["*keep*"], "labels": dict([PROTECT_LABEL])}},
        actions={"vertex": "delete", "kubeflow": "pause", "kubernetes": "delete", "airflow": "delete"})
    raw = setup.raw
    raw["registry"].update(url=f"sqlite:///{store}", timeout=REGISTRY_TIMEOUT)
    raw["log"] = {"format": "json", "level": "error"}
    for target in raw["targets"]:
        target.update(timeout=TIMEOUT, list_deadline=LIST_DEADLINE, max_retries=MAX_RETRIES, page_size=PAGE_SIZE)
        if target["type"] == "airflow":
            target["protect"] = {"names": ["*pinned*"]}
    setup.write()
    with emulated(setup) as emulators:
        emulators.vertex.operation_delay = 0.0  # a delete's long-running operation is done at once
        soak = Soak(tmp_path, emulators, setup, store, rng)
        for target in TARGETS:
            for _ in range(MIN_UNMANAGED):
                soak.world._make(target, zenml=False, protected=False, bound=False)
        soak.daemon = build_daemon(setup.config, setup.path)
        soak.daemon.leadership.start()
        try:
            yield soak
        finally:
            soak.daemon.reconciler.close()
            soak.daemon.store.close()
            stoppers = [threading.Thread(target=e.stop) for e in emulators.all()]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()


# The suite-wide 600 s timeout would cut the long form short: allow about 1.5 s a cycle.
@pytest.mark.timeout(max(600, int(CYCLES * 1.5)))
def test_soak(soak: Soak) -> None:
    f = soak.figures
    warm_up = max(20, CYCLES // 10)
    started = time.monotonic()
    start: dict[str, float] = {}
    for cycle in range(1, CYCLES + 1):
        soak.step(cycle)
        if cycle == warm_up:
            start, types = _memory(), _types()
        assert not f.wrong, f"seed {SEED}: wrong actions: {f.wrong[:5]}"
        assert not f.problems, f"seed {SEED}: {f.problems[:5]}"
    end = _memory()
    seconds = time.monotonic() - started
    f.memory = {k: (start[k], end[k]) for k in start}
    measured = CYCLES - warm_up
    print(f"soak: {CYCLES} cycles in {seconds:.0f}s; memory {f.memory}; figures {f}")
    _write_results(soak, seconds, warm_up)

    assert f.wrong == [] and f.lost == 0 and f.duplicated == 0 and f.unmatched_records == 0
    assert f.eligible_acted_on > 0, "no action was taken: the soak proved nothing about actions"
    assert sum(v for k, v in f.faults.items() if k.startswith("listing")) > 0
    assert end["fds"] - start["fds"] <= FD_SLACK, f"open fds grew: {start['fds']:.0f} -> {end['fds']:.0f}"
    assert end["gc_objects"] - start["gc_objects"] <= GC_OBJECTS_PER_CYCLE * measured, (
        f"Python objects grew by {end['gc_objects'] - start['gc_objects']:.0f} in {measured} cycles; "
        f"most grown: {_grown(types, _types())}")
    assert end["rss_mb"] - start["rss_mb"] <= RSS_FLOOR_MB + RSS_KB_PER_CYCLE * measured / 1024, (
        f"RSS grew {start['rss_mb']:.1f} -> {end['rss_mb']:.1f} MB in {measured} cycles")


def _write_results(soak: Soak, seconds: float, warm_up: int) -> None:
    f = soak.figures
    if os.environ.get("SOAK_SEED") is not None and os.environ.get("SOAK_WRITE_RESULTS") != "1":
        return  # a replay does not overwrite the published figures
    lines = [
        "# Soak figures (generated by tests/soak/test_soak.py; do not edit)",
        "",
        f"Seed {SEED}, {f.cycles} cycles in {seconds:.0f}s (`SOAK_CYCLES={CYCLES}`), "
        f"`dry_run_cycles: {DRY_RUN_CYCLES}`, cleanup approved except during {f.approval_off_cycles} cycles.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| cycles run (success / partial / failed) | {f.cycles} ({f.results.get('success', 0)} / "
        f"{f.results.get('partial', 0)} / {f.results.get('failed', 0)}) |",
        f"| faults injected | {sum(f.faults.values())} |",
        f"| drift changes made | {sum(soak.world.counters.drift.values())} |",
        f"| actions sent (delete/pause requests, per live schedule and cycle) | {f.actions} |",
        f"| eligible orphans acted on | {f.eligible_acted_on} |",
        f"| **wrong actions** | **{len(f.wrong)}** |",
        f"| audit records: actions / dry runs | {f.audit_real} / {f.audit_dry_run} |",
        f"| action outcomes | {', '.join(f'{k} {v}' for k, v in sorted(f.outcomes.items()))} |",
        f"| **audit records lost / duplicated / without their request** | **{f.lost} / {f.duplicated} / "
        f"{f.unmatched_records}** |",
        f"| faulted targets left unknown, untouched | {f.unknown_when_faulted} |",
        f"| RSS after warm-up (cycle {warm_up}) → end | {f.memory['rss_mb'][0]:.1f} → {f.memory['rss_mb'][1]:.1f} MB |",
        f"| open fds after warm-up → end | {f.memory['fds'][0]:.0f} → {f.memory['fds'][1]:.0f} |",
        f"| Python objects after warm-up → end | {f.memory['gc_objects'][0]:.0f} → {f.memory['gc_objects'][1]:.0f} |",
        f"| max series (drift_info / the rest) | {f.max_series} ({f.max_detail_series} / {f.max_fixed_series}) |",
        "",
        "Faults by kind:",
        "",
        "| fault | times |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(f.faults.items())),
        "",
        "Drift changes by kind:",
        "",
        "| change | times |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(soak.world.counters.drift.items())),
        "",
    ]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
