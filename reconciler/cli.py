"""The `schedule-reconciler` command line.

Bad config or input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import make_url

from providers import build_registry, build_target
from reconciler import __version__
from reconciler.config import Config, ConfigError, load_config, parse_duration, resolve_config_path, secret
from reconciler.logs import configure
from reconciler.metrics import Metrics
from reconciler.reconcile import CleanupContext, Reconciler, Target
from reconciler.report import dumps, to_text
from reconciler.restore import RestoreError
from reconciler.restore import restore as do_restore
from reconciler.state import LAST_GOOD_REGISTRY, StateError, StateStore

if TYPE_CHECKING:
    from reconciler.loop import Daemon

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    config_help = "config file (default: $SCHEDULE_RECONCILER_CONFIG, then ./schedule-reconciler.yaml)"
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS lets --config stand before or after the command without one overwriting the other.
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
    parser = argparse.ArgumentParser(
        prog="schedule-reconciler", parents=[common],
        description="Find drift between ZenML's schedules and the orchestrators that run them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="the daemon: HTTP endpoints and the reconcile loop")
    run.add_argument("--once", action="store_true",
                     help="run one cycle and exit (0 when every part was read, 2 otherwise)")

    plan = commands.add_parser("plan", parents=[common],
                               help="one read-only cycle: drift and the cleanup plan (exit 0 no drift, 1 drift, 2 error)")
    plan.add_argument("--output", choices=["text", "json"], default="text")

    check = commands.add_parser("check-config", parents=[common], help="validate the config")
    check.add_argument("--connect", action="store_true", help="also reach the registry and every target")

    history = commands.add_parser("history", parents=[common], help="the audit log of cleanup actions, newest first")
    history.add_argument("--target", help="only this target")
    history.add_argument("--action", choices=["delete", "pause", "resume", "recreate"])
    history.add_argument("--outcome", choices=["dry_run", "succeeded", "failed", "already_gone", "skipped_changed"])
    history.add_argument("--since", metavar="DURATION", help="only records younger than this (e.g. 24h, 7d)")
    history.add_argument("--dry-run", action="store_true", help="include dry-run records")
    history.add_argument("--limit", type=int, default=50, help="at most this many records (default 50)")
    history.add_argument("--output", choices=["text", "json"], default="text")

    restore = commands.add_parser("restore", parents=[common],
                                  help="undo one cleanup action: resume what was paused, recreate what was deleted")
    restore.add_argument("id", type=int, metavar="ID", help="the audit record's id (see `history`)")
    restore.add_argument("--output", choices=["text", "json"], default="text")

    sandbox = commands.add_parser(
        "sandbox", parents=[common],
        help="local demo: emulated orchestrators with seeded drift, a real ZenML store file, then the daemon "
             "(default config: config/sandbox.yaml)")
    sandbox.add_argument("--store", metavar="FILE", help="the ZenML SQLite store (default: the committed 0.98 one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sandbox":
            return sandbox(getattr(args, "config", None), args.store)
        config = load_config(resolve_config_path(getattr(args, "config", None)))
        if args.command == "check-config":
            return check_config(config, args.connect)
        if args.command == "plan":
            return plan(config, args.output)
        if args.command == "history":
            return history(config, args)
        if args.command == "restore":
            return restore(config, args.id, args.output)
        return run(config, args.once, resolve_config_path(getattr(args, "config", None)))
    except (ConfigError, StateError, RestoreError) as exc:
        print(f"schedule-reconciler: {exc}", file=sys.stderr)
        return EXIT_ERROR


_TLS_WARNED: set[str] = set()


def warn_unverified_tls(config: Config) -> None:
    """One warning per client (registry, target, lease) whose `verify_tls` is off, once per process."""
    parts: list[tuple[str, bool]] = [("registry", config.registry.verify_tls or config.registry.type == "zenml-sql")]
    parts += [(f"targets.{t.name}", t.verify_tls) for t in config.targets]
    if config.leader_election.enabled and config.leader_election.backend == "kubernetes":
        parts.append(("leader_election", config.leader_election.verify_tls))
    for what, verified in parts:
        if not verified and what not in _TLS_WARNED:
            _TLS_WARNED.add(what)
            structlog.get_logger("reconciler").warning(
                "TLS certificate verification is off: the server is not authenticated; set ca_bundle instead",
                part=what)


def build_reconciler(config: Config, metrics: Metrics) -> Reconciler:
    """Construct every provider; one that cannot even be built is a config error (exit 2)."""
    warn_unverified_tls(config)
    try:
        registry = build_registry(config.registry, metrics.recorder("registry"))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable key file: say which part, in one line
        raise ConfigError(f"registry: {' '.join(str(exc).split())[:300]}") from None
    targets = []
    for target in config.targets:
        try:
            targets.append(Target(target, build_target(target, metrics.recorder(target.name))))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"targets.{target.name}: {' '.join(str(exc).split())[:300]}") from None
    metrics.set_targets([(t.config.name, t.config.type, t.provider.endpoint) for t in targets])
    return Reconciler(config, registry, targets)


def open_store(config: Config, migrate: bool = True) -> StateStore:
    url = config.state.url
    password = secret(config.state.password_env, None)
    if password is not None:
        url = make_url(url).set(password=password).render_as_string(hide_password=False)
    return StateStore(url, migrate=migrate)


def build_daemon(config: Config, config_path: Path | None) -> "Daemon":
    from reconciler.leader import AlwaysLeader, Leadership, identity_for
    from reconciler.loop import Daemon
    from reconciler.reload import ConfigWatcher

    metrics = Metrics(config.metrics.detail_series_limit)
    store = open_store(config)
    identity = identity_for(os.environ)
    election = config.leader_election
    leadership: Any = AlwaysLeader(identity)
    if election.enabled:
        from providers import build_elector

        leadership = Leadership(build_elector(election, store, identity), election.lease_duration)
    watcher = ConfigWatcher(config_path) if config_path is not None and config_path.is_file() else None
    return Daemon(config, build_reconciler(config, metrics), metrics, store, leadership, watcher,
                  rebuild=lambda new: build_reconciler(new, metrics))


def run(config: Config, once: bool, config_path: Path | None = None) -> int:
    configure(config.log.format, config.log.level)
    daemon = build_daemon(config, config_path)
    tune_gc()
    if once:
        daemon.leadership.start()
        try:
            report = daemon.run_cycle()
        finally:
            daemon.leadership.stop()
            daemon.reconciler.close()
            daemon.store.close()
        return 0 if report is not None and report.result == "success" else EXIT_ERROR
    return daemon.run()


def tune_gc() -> None:
    """A cycle allocates a few objects per live schedule and frees them all at its end.

    With the default thresholds the collector ran every few hundred allocations
    and took about 30% of a 100k-schedule cycle's CPU (benchmarks/RESULTS.md).
    Freezing the start-up heap (the SDKs' modules) and collecting less often
    keeps that away; reference counting still frees each cycle's objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def plan(config: Config, output: str) -> int:
    """One read-only cycle. It never acts, whatever the cleanup config says."""
    configure(config.log.format, "warning" if config.log.level == "info" else config.log.level)
    context = plan_context(config)
    reconciler = build_reconciler(config, Metrics(config.metrics.detail_series_limit))
    try:
        report = reconciler.cycle(1, context=context)
    finally:
        reconciler.close()
    print(dumps(report) if output == "json" else to_text(report))
    return report.exit_code


def plan_context(config: Config) -> CleanupContext:
    """What the state store remembers, read without writing; nothing when there is no store yet.

    `plan` shows what the leader would do, so the leader guard is not applied.
    """
    empty = CleanupContext(enforce_leader=False, acting=False)
    database = make_url(config.state.url).database if config.state.url.startswith("sqlite") else None
    if database is not None and (database == ":memory:" or not Path(database).is_file()):
        return empty
    store = open_store(config, migrate=False)
    try:
        if store.revision() != StateStore.head():
            print("plan: the state store is not migrated yet; dry-run evidence is not shown", file=sys.stderr)
            return empty
        names = [t.name for t in config.targets]
        baseline = store.mark(LAST_GOOD_REGISTRY)
        return CleanupContext(
            evidence={n: store.evidence(n) for n in names}, restored={n: store.restored(n) for n in names},
            inventory={n: store.inventory(n) for n in names},
            registry_baseline=None if baseline is None else int(baseline),
            enforce_leader=False, acting=False,
        )
    finally:
        store.close()


def history(config: Config, args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
    store = open_store(config)
    try:
        records = store.history(target=args.target, action=args.action, outcome=args.outcome, since=since,
                                include_dry_run=args.dry_run or args.outcome == "dry_run", limit=args.limit)
    finally:
        store.close()
    if args.output == "json":
        print(json.dumps([r.as_dict() for r in records], indent=2, default=str))
        return 0
    if not records:
        print("no audit records match")
        return 0
    rows = [[str(r.id), _when(r.started_at), r.target, r.action + (" (dry run)" if r.dry_run else ""),
             r.outcome or r.status, r.live_name, r.error or (f"restored by {r.restored_by}" if r.restored_by else "")]
            for r in records]
    header = ["ID", "WHEN (UTC)", "TARGET", "ACTION", "OUTCOME", "LIVE", "NOTE"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def restore(config: Config, record_id: int, output: str) -> int:
    configure(config.log.format, "warning")
    store = open_store(config)
    built: dict[str, Any] = {}

    def provider_for(name: str) -> Any:
        target = next((t for t in config.targets if t.name == name), None)
        if target is None:
            raise RestoreError(f"audit record {record_id}: target {name!r} is not in the config any more")
        built[name] = build_target(target)
        return built[name]

    try:
        from reconciler.leader import identity_for

        done = do_restore(store, record_id, provider_for, identity_for(os.environ))
    finally:
        for provider in built.values():
            provider.close()
        store.close()
    if output == "json":
        print(json.dumps(done.as_dict(), indent=2, default=str))
    elif done.outcome == "succeeded":
        what = "resumed" if done.action == "resume" else f"recreated as {done.native_id}"
        print(f"restored audit record {record_id}: {done.live_name} on {done.target} {what} "
              f"(audit record {done.id}); it is protected from cleanup from now on")
    else:
        print(f"restore of audit record {record_id} failed: {done.error} (audit record {done.id})")
    return 0 if done.outcome == "succeeded" else EXIT_ERROR


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def check_config(config: Config, connect: bool) -> int:
    print(f"config ok: registry {config.registry.type}, {len(config.targets)} target(s): "
          + ", ".join(f"{t.name} ({t.type})" for t in config.targets))
    if not connect:
        return 0
    configure(config.log.format, "warning")
    reconciler = build_reconciler(config, Metrics())
    failures = 0
    checks = [("registry", reconciler.registry.check)] + [(t.config.name, t.provider.check) for t in reconciler.targets]
    for name, check in checks:
        try:
            check()
            print(f"{name}: reachable")
        except Exception as exc:  # noqa: BLE001 - report every endpoint, then fail once
            failures += 1
            print(f"{name}: ERROR {' '.join(str(exc).split())[:300]}")
    reconciler.close()
    return EXIT_ERROR if failures else 0


def sandbox(config_path: str | None, store: str | None) -> int:
    """Emulators seeded from the scenario that made the ZenML store, then the daemon, until Ctrl-C.

    Runs from the repository root (the sandbox config's paths are relative to it),
    on a working copy of the config in .cache/sandbox that the user may edit while
    it runs (the daemon reloads it), and a fresh state store beside it.
    """
    import shutil

    from providers.emulators.sandbox import default_store, running, seed

    repo = Path(__file__).resolve().parents[1]
    source = Path(config_path).resolve() if config_path else repo / "config" / "sandbox.yaml"
    store_path = Path(store).resolve() if store else default_store()
    os.chdir(repo)
    if not store_path.is_file():
        raise ConfigError(f"sandbox: no ZenML store file at {store_path}")
    work = repo / ".cache" / "sandbox"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    live_config = work / "schedule-reconciler.yaml"
    text = source.read_text(encoding="utf-8")
    if store:
        text += f"\nregistry: {{type: zenml-sql, url: 'sqlite:///{store_path}'}}\n"
    live_config.write_text(text, encoding="utf-8")
    config = load_config(live_config)
    configure(config.log.format, config.log.level)
    with running(config) as emulators:
        snapshot = build_registry(config.registry).read()
        seed(emulators, {c.name: c.id for c in snapshot.components})
        daemon = build_daemon(config, live_config)
        report = daemon.run_cycle()
        if report is not None:
            print(to_text(report), flush=True)
        address = f"http://{config.metrics.host}:{config.metrics.port}"
        shown = live_config.relative_to(repo)
        print(f"""
The sandbox is running: four emulated orchestrators on 127.0.0.1 seeded with drift of every kind,
the registry a ZenML 0.98 store file ({store_path.name}), a cycle every {config.interval:g}s.
Cleanup is enabled in dry-run mode: candidates collect dry-run cycles, nothing is acted on.

  metrics   {address}/metrics
  plan      {address}/plan
  health    {address}/healthz  {address}/readyz
  from another terminal:
            .venv/bin/schedule-reconciler plan --config {shown}
            .venv/bin/schedule-reconciler history --dry-run --config {shown}
  approve cleanup: set `approve: true` under `cleanup:` in {shown}; the next cycle picks it up.

Ctrl-C stops the daemon and every emulator it started.
""", flush=True)
        return daemon.run()


if __name__ == "__main__":
    raise SystemExit(main())
