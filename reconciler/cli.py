"""The `schedule-reconciler` command line.

Bad config or input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence


from providers import build_registry, build_target
from reconciler import __version__
from reconciler.config import Config, ConfigError, load_config, resolve_config_path
from reconciler.logs import configure
from reconciler.metrics import Metrics
from reconciler.reconcile import Reconciler, Target
from reconciler.report import dumps, to_text

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
        return run(config, args.once)
    except ConfigError as exc:
        print(f"schedule-reconciler: {exc}", file=sys.stderr)
        return EXIT_ERROR


def build_reconciler(config: Config, metrics: Metrics) -> Reconciler:
    """Construct every provider; one that cannot even be built is a config error (exit 2)."""
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


def run(config: Config, once: bool) -> int:
    from reconciler.loop import Daemon

    configure(config.log.format, config.log.level)
    metrics = Metrics(config.metrics.detail_series_limit)
    daemon = Daemon(config, build_reconciler(config, metrics), metrics)
    tune_gc()
    if once:
        report = daemon.run_cycle()
        daemon.reconciler.close()
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
    reconciler = build_reconciler(config, Metrics(config.metrics.detail_series_limit))
    try:
        report = reconciler.cycle(1)
    finally:
        reconciler.close()
    print(dumps(report) if output == "json" else to_text(report))
    return report.exit_code


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
    """Emulators seeded from the scenario that made the ZenML store, then the daemon, until Ctrl-C."""
    from pathlib import Path

    from providers.emulators.sandbox import default_store, running, seed
    from reconciler.loop import Daemon

    repo = Path(__file__).resolve().parents[1]
    config = load_config(Path(config_path) if config_path else repo / "config" / "sandbox.yaml")
    store_path = Path(store) if store else default_store()
    if not store_path.is_file():
        raise ConfigError(f"sandbox: no ZenML store file at {store_path}")
    registry = config.registry.model_copy(update={"type": "zenml-sql", "url": f"sqlite:///{store_path.resolve()}"})
    config = config.model_copy(update={"registry": registry})
    configure(config.log.format, config.log.level)
    with running(config) as emulators:
        snapshot = build_registry(config.registry).read()
        seed(emulators, {c.name: c.id for c in snapshot.components})
        metrics = Metrics(config.metrics.detail_series_limit)
        daemon = Daemon(config, build_reconciler(config, metrics), metrics)
        report = daemon.run_cycle()
        if report is not None:
            print(to_text(report), flush=True)
        address = f"http://{config.metrics.host}:{config.metrics.port}"
        print(f"""
The sandbox is running: four emulated orchestrators on 127.0.0.1 seeded with drift of every kind,
the registry a ZenML 0.98 store file ({store_path}), a cycle every {config.interval:g}s.

  metrics   {address}/metrics
  plan      {address}/plan
  health    {address}/healthz  {address}/readyz
  from another terminal:
            .venv/bin/schedule-reconciler plan --config config/sandbox.yaml
            .venv/bin/schedule-reconciler plan --config config/sandbox.yaml --output json

Ctrl-C stops the daemon and every emulator it started.
""", flush=True)
        return daemon.run()


if __name__ == "__main__":
    raise SystemExit(main())
