"""The soak's world: what the driver puts into the emulators and the ZenML store, and the oracle.

The driver is the only one who changes the outside systems between cycles (the
daemon changes them during a cycle, by its actions). It keeps, for every live
schedule it made, the ground truth the daemon must infer: whether ZenML made it,
whether it is protected, which registry row (if any) it is bound to. The oracle
decides eligibility from that record and from the emulators' stored objects
(read back every cycle), never through reconciler/ code:

    eligible orphan = live, made by ZenML, not protected, no expected (active,
    non-archived) registry row bound to it, and (pause action) still enabled;
    an action on it is allowed only after `dry_run_cycles` earlier complete
    cycles in which it was eligible with the same observable state (spec, pause
    state, labels, staleness, the archived row it is bound to). A change resets
    that count, as the evidence must.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from providers.emulators.airflow import Dag
from providers.emulators.kubeflow import seed_recurring_run
from providers.emulators.kubernetes import plain_cron_job, zenml_cron_job
from providers.emulators.sandbox import Emulators

TARGETS = ("vertex", "kfp", "k8s", "airflow")  # the sandbox config's target names
COMPONENT = {"vertex": "vertex-orchestrator", "kfp": "kfp-orchestrator", "k8s": "k8s-orchestrator",
             "airflow": "airflow-orchestrator"}
# The per-target cleanup action the soak configures (airflow: `delete` applies to stale DAGs only).
ACTION = {"vertex": "delete", "kfp": "pause", "k8s": "delete", "airflow": "delete"}
PROTECT_LABEL = ("schedule-reconciler/protect", "true")
MAX_LIVE = 10  # per target: keeps the emulators, the store and every listing small and a cycle fast
MIN_UNMANAGED = 4  # per target, never deleted: a listing of page size 3 always has a second page to fail on

Truth = dict[str, tuple[Any, ...]]  # native id -> the observable state the evidence's fingerprint covers


@dataclass
class Row:
    """A ZenML `schedule` row the driver wrote."""

    id: str
    name: str
    pipeline_id: str
    archived: bool = False


@dataclass
class Item:
    """One live schedule the driver made, and what the oracle knows of it."""

    target: str
    native_id: str
    name: str
    zenml: bool
    protected: bool
    pipeline: str
    row: Row | None = None
    streak_key: tuple[Any, ...] | None = None  # the state the current evidence streak is for
    credit: int = 0  # complete cycles of that streak so far: an upper bound of the daemon's evidence
    gone_since: int | None = None


@dataclass
class Counters:
    drift: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class World:
    def __init__(self, emulators: Emulators, store: Path, component_ids: dict[str, str], rng: random.Random) -> None:
        self.e = emulators
        self.store = store
        self.components = {t: component_ids[COMPONENT[t]] for t in TARGETS}
        self.rng = rng
        self.items: dict[tuple[str, str], Item] = {}
        self.counters = Counters()
        self._n = 0
        with sqlite3.connect(store) as db:
            self.project_id, self.user_id, self.vertex_pipeline_id = db.execute(
                "SELECT s.project_id, s.user_id, s.pipeline_id FROM schedule s "
                "JOIN stack_component c ON c.id = s.orchestrator_id WHERE c.flavor = 'vertex' LIMIT 1").fetchone()
        db.close()

    # -- reading the ground truth -------------------------------------------------------------------------

    def truth(self, target: str) -> Truth:
        if target == "vertex":
            out: Truth = {}
            for s in self.e.vertex.schedules():
                labels = dict(s.create_pipeline_job_request.pipeline_job.labels)
                out[s.name] = (s.cron, s.state.name, tuple(sorted(labels.items())))
            return out
        if target == "kfp":
            with self.e.kubeflow.lock:
                return {rid: (_kfp_cron(r), r["status"]) for rid, r in self.e.kubeflow.recurring_runs.items()}
        if target == "k8s":
            with self.e.kubernetes.lock:
                return {f"{ns}/{name}": (o["spec"]["schedule"], bool(o["spec"].get("suspend")),
                                         tuple(sorted((o["metadata"].get("labels") or {}).items())))
                        for (resource, ns, name), o in self.e.kubernetes.objects.items() if resource == "cronjobs"}
        with self.e.airflow.lock:
            return {d.dag_id: (d.timetable_summary, d.is_paused, d.is_stale, tuple(d.tags))
                    for d in self.e.airflow.dags.values()}

    @staticmethod
    def enabled(target: str, state: tuple[Any, ...]) -> bool:
        if target == "vertex":
            return bool(state[1] == "ACTIVE")
        if target == "kfp":
            return bool(state[1] == "ENABLED")
        return not state[1]  # k8s suspend, airflow is_paused

    @staticmethod
    def action(target: str, state: tuple[Any, ...]) -> str:
        if target == "airflow":
            return "delete" if state[2] else "pause"  # §5: delete only what Airflow marks stale
        return ACTION[target]

    def eligible(self, item: Item, truth: Truth) -> bool:
        """An orphan the daemon may act on once it has the evidence (see the module docstring)."""
        state = truth.get(item.native_id)
        if state is None or not item.zenml or item.protected:
            return False
        if item.row is not None and not item.row.archived:
            return False
        return self.action(item.target, state) == "delete" or self.enabled(item.target, state)

    def key(self, item: Item, truth: Truth) -> tuple[Any, ...]:
        return (truth.get(item.native_id), item.row.id if item.row is not None else None)

    # -- drift changes ------------------------------------------------------------------------------------

    def live_items(self, target: str, truth: Truth) -> list[Item]:
        return [i for i in self.items.values() if i.target == target and i.native_id in truth]

    def change(self, cycle: int) -> None:
        """One random drift change, as ZenML, an operator or someone else would make it between cycles."""
        target = self.rng.choice(TARGETS)
        truth = self.truth(target)
        live = self.live_items(target, truth)
        kinds = ["orphan"] * 4 + ["protected orphan", "unmanaged", "in-sync pair", "re-bind orphan (row added)",
                                  "archive row", "delete row", "change cron", "pause/resume out-of-band",
                                  "pause/resume out-of-band", "delete live out-of-band", "change cron"]
        if target == "airflow":
            kinds.append("DAG file removed/restored (stale)")
        kind = self.rng.choice(kinds)
        if kind in ("orphan", "protected orphan", "unmanaged", "in-sync pair") and len(truth) >= MAX_LIVE:
            kind = "delete live out-of-band"
        handlers = {"orphan": self._orphan, "protected orphan": self._orphan, "unmanaged": self._unmanaged,
                    "in-sync pair": self._in_sync, "re-bind orphan (row added)": self._re_bind,
                    "archive row": self._archive, "delete row": self._delete, "change cron": self._change,
                    "pause/resume out-of-band": self._pause_resume, "delete live out-of-band": self._delete,
                    "DAG file removed/restored (stale)": self._stale}
        if handlers[kind](target, kind, live, truth):
            self.counters.bump(self.counters.drift, kind)

    def _orphan(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        protected = kind.startswith("protected")
        self._make(target, zenml=True, protected=protected, bound=False)
        return True

    def _unmanaged(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        self._make(target, zenml=False, protected=False, bound=False)
        return True

    def _in_sync(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        self._make(target, zenml=True, protected=False, bound=True)
        return True

    def _re_bind(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        options = [i for i in live if i.zenml and (i.row is None or i.row.archived)]
        if not options:
            return False
        item = self.rng.choice(options)
        if item.row is not None:
            self._delete_row(item.row)  # an archived row gives way to a fresh one under the original name
        item.row = self._insert_row(target, item, truth[item.native_id])
        return True

    def _archive(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        options = [i for i in live if i.row is not None and not i.row.archived]
        if not options:
            return False
        row = self.rng.choice(options).row
        assert row is not None
        # ZenML's soft delete: archived, inactive, renamed `<name>_<uuid4>`.
        row.archived = True
        self._sql("UPDATE schedule SET is_archived = 1, active = 0, name = ? WHERE id = ?",
                  (f"{row.name}_{uuid.uuid4()}", row.id))
        return True

    def _delete(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        if kind == "delete row":
            options = [i for i in live if i.row is not None]
            if not options:
                return False
            item = self.rng.choice(options)
            assert item.row is not None
            self._delete_row(item.row)
            item.row = None
            return True
        unmanaged = [i for i in live if not i.zenml]
        options = [i for i in live if i.zenml] + (unmanaged if len(unmanaged) > MIN_UNMANAGED else [])
        if not options:
            return False
        self._remove_live(self.rng.choice(options))
        return True

    def _change(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        if not live:
            return False
        item = self.rng.choice(live)
        cron = f"{self.rng.randrange(60)} {self.rng.randrange(24)} * * *"
        if target == "vertex":
            with self.e.vertex.lock:
                self.e.vertex._schedules[item.native_id].cron = cron
        elif target == "kfp":
            with self.e.kubeflow.lock:
                run = self.e.kubeflow.recurring_runs[item.native_id]
                run["trigger"]["cron_schedule"]["cron"] = f"0 {cron}"
                self.e.kubeflow._version += 1  # the emulator's listing cache keys on it
        elif target == "k8s":
            self._k8s_update(item, lambda o: o["spec"].__setitem__("schedule", cron))
        else:
            with self.e.airflow.lock:
                self.e.airflow.dags[item.native_id].timetable_summary = cron
        return True

    def _pause_resume(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        if not live:
            return False
        item = self.rng.choice(live)
        enable = not self.enabled(target, truth[item.native_id])
        if target == "vertex":
            with self.e.vertex.lock:
                schedule = self.e.vertex._schedules[item.native_id]
                schedule.state = type(schedule.state)["ACTIVE" if enable else "PAUSED"]
        elif target == "kfp":
            with self.e.kubeflow.lock:
                run = self.e.kubeflow.recurring_runs[item.native_id]
                run["status"], run["mode"] = ("ENABLED", "ENABLE") if enable else ("DISABLED", "DISABLE")
                self.e.kubeflow._version += 1
        elif target == "k8s":
            self._k8s_update(item, lambda o: o["spec"].__setitem__("suspend", not enable))
        else:
            with self.e.airflow.lock:
                self.e.airflow.dags[item.native_id].is_paused = not enable
        return True

    def _stale(self, target: str, kind: str, live: list[Item], truth: Truth) -> bool:
        options = [i for i in live if i.zenml]
        if not options:
            return False
        with self.e.airflow.lock:
            dag = self.e.airflow.dags[self.rng.choice(options).native_id]
            dag.is_stale = not dag.is_stale
        return True

    # -- making and removing live schedules and rows -----------------------------------------------------

    def _make(self, target: str, *, zenml: bool, protected: bool, bound: bool) -> Item:
        self._n += 1
        n = self._n
        cron = f"{self.rng.randrange(60)} {self.rng.randrange(24)} * * *"
        # Protection by a global name glob (`*keep*`), the global label, or (airflow) the target's own glob.
        by_label = protected and target in ("vertex", "k8s") and self.rng.random() < 0.5
        mark = ("pinned" if target == "airflow" and self.rng.random() < 0.5 else "keep") if protected and not by_label else ""
        pipeline = f"soak{target}{mark}{n}"
        labels = dict([PROTECT_LABEL]) if by_label else {}
        if target == "vertex":
            name = pipeline if zenml else f"opsvx{n}"
            native_id = self.e.vertex.add_schedule(name, cron, zenml=zenml, pipeline_name=name, labels=labels)
        elif target == "kfp":
            if zenml:
                name = f"{pipeline}_{secrets.token_hex(16)}"
                experiment = self.e.kubeflow.experiment_named(pipeline)
                run = seed_recurring_run(name, experiment["experiment_id"], cron=f"0 {cron}")
            else:
                name = f"opsrun{n}"
                experiment = self.e.kubeflow.experiment_named("ops")
                run = seed_recurring_run(name, experiment["experiment_id"], cron=f"0 {cron}",
                                         pipeline_version_reference={"pipeline_id": str(uuid.uuid4()),
                                                                     "pipeline_version_id": str(uuid.uuid4())})
            native_id = str(self.e.kubeflow.add_run(run)["recurring_run_id"])
        elif target == "k8s":
            if zenml:
                name = f"zenml-{secrets.token_hex(4)}-{pipeline}"
                job = zenml_cron_job(pipeline, self.components[target], cron, "zenml", name=name)
                job["metadata"]["labels"].update(labels)
            else:
                name = f"opsjob{n}"
                job = plain_cron_job(name, cron)
            self.e.kubernetes.add("cronjobs", job)
            native_id = f"zenml/{name}"
        else:
            name = f"{pipeline}_{secrets.token_hex(16)}" if zenml else f"ops_dag_{n}"
            self.e.airflow.add(Dag(name, cron, is_paused=False, is_stale=zenml and self.rng.random() < 0.4,
                                   zenml_zip=zenml))
            native_id = name
        item = Item(target, native_id, name, zenml, protected, pipeline)
        if zenml and target != "vertex":  # ZenML has the pipeline row of every schedule it made
            self._sql("INSERT OR IGNORE INTO pipeline (id, created, updated, name, description, project_id, user_id, "
                      "run_count) VALUES (?, ?, ?, ?, NULL, ?, ?, 0)",
                      (uuid.uuid4().hex, _now(), _now(), pipeline, self.project_id, self.user_id))
        self.items[(target, native_id)] = item
        if bound:
            item.row = self._insert_row(target, item, self.truth(target)[native_id])
        return item

    def _insert_row(self, target: str, item: Item, state: tuple[Any, ...]) -> Row:
        """A row ZenML would have for this live schedule: same name or pipeline, same cron, same active flag."""
        if target == "vertex":
            pipeline_id = self.vertex_pipeline_id
        else:
            with sqlite3.connect(self.store) as db:
                pipeline_id = db.execute("SELECT id FROM pipeline WHERE name = ?", (item.pipeline,)).fetchone()[0]
            db.close()
        cron = state[0].split(" ", 1)[1] if target == "kfp" else state[0]
        row = Row(uuid.uuid4().hex, item.pipeline, pipeline_id)
        self._sql("INSERT INTO schedule (id, created, updated, name, project_id, user_id, pipeline_id, orchestrator_id, "
                  "active, cron_expression, catchup, is_archived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                  (row.id, _now(), _now(), row.name, self.project_id, self.user_id, pipeline_id,
                   self.components[target], self.enabled(target, state), cron))
        return row

    def _delete_row(self, row: Row) -> None:
        self._sql("DELETE FROM schedule WHERE id = ?", (row.id,))

    def _remove_live(self, item: Item) -> None:
        if item.target == "vertex":
            with self.e.vertex.lock:
                self.e.vertex._schedules.pop(item.native_id, None)
                self.e.vertex._changed()
        elif item.target == "kfp":
            with self.e.kubeflow.lock:
                self.e.kubeflow.recurring_runs.pop(item.native_id, None)
                self.e.kubeflow._version += 1
        elif item.target == "k8s":
            with self.e.kubernetes.lock:
                self.e.kubernetes.objects.pop(("cronjobs", "zenml", item.name), None)
        else:
            with self.e.airflow.lock:
                self.e.airflow.dags.pop(item.native_id, None)

    def _k8s_update(self, item: Item, edit: Any) -> None:
        with self.e.kubernetes.lock:
            obj = self.e.kubernetes.objects[("cronjobs", "zenml", item.name)]
            edit(obj)
            obj["metadata"]["resourceVersion"] = self.e.kubernetes._next_rv()

    def _sql(self, statement: str, values: tuple[Any, ...]) -> None:
        with sqlite3.connect(self.store) as db:
            db.execute(statement, values)
        db.close()

    def forget_gone(self, cycle: int, truth: dict[str, Truth]) -> None:
        """Drop the record of a live schedule a few cycles after it vanished (and its row): keeps the
        driver's own memory flat, so the memory figures measure the daemon, not the driver."""
        for key, item in list(self.items.items()):
            if item.native_id in truth[item.target]:
                continue
            if item.gone_since is None:
                item.gone_since = cycle
            elif cycle - item.gone_since >= 3:
                if item.row is not None:
                    self._delete_row(item.row)
                if item.target == "kfp" and item.zenml:  # its experiment goes too: the emulator stays small
                    with self.e.kubeflow.lock:
                        for experiment_id, experiment in list(self.e.kubeflow.experiments.items()):
                            if experiment["display_name"] == item.pipeline:
                                del self.e.kubeflow.experiments[experiment_id]
                        self.e.kubeflow._version += 1
                del self.items[key]

    def rows_by_target(self) -> dict[str, int]:
        """Registry rows (archived ones too) of each target's component, read from the store itself."""
        with sqlite3.connect(self.store) as db:
            counts = dict(db.execute("SELECT orchestrator_id, count(*) FROM schedule GROUP BY orchestrator_id"))
        db.close()
        return {t: int(counts.get(self.components[t], 0)) for t in TARGETS}


def _kfp_cron(run: dict[str, Any]) -> str | None:
    trigger = run.get("trigger") or {}
    cron = (trigger.get("cron_schedule") or {}).get("cron")
    return str(cron) if cron is not None else None


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
