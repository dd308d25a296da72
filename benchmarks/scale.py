"""The scale benchmark (issue 3): one daemon cycle against N registry schedules.

For each N: build a ZenML store of N schedules and matching live seeds
(benchmarks/make_store.py), start the Vertex (gRPC), KFP and Kubernetes
emulators as separate processes on 127.0.0.1 with a fixed latency on every
listing and lookup request, run one daemon cycle in its own process, then the
naive method (one filtered request per registry schedule, time-capped and
extrapolated), and print a markdown table with seconds and ratios.

    .venv/bin/python -m benchmarks.scale                 # N = 1000 10000 100000
    .venv/bin/python -m benchmarks.scale --n 1000 --naive-cap 5

Every process it starts runs in its own process group and is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import make_store
from tests.support.procs import Server, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PAGE_SIZES = {"vertex": 100, "kubeflow": 200, "kubernetes": 500}  # each target's config page_size
TARGET_NAMES = {"vertex": "vertex", "kubeflow": "kfp", "kubernetes": "k8s"}
# Operations that carry the fixed latency: every read the daemon and the naive method send.
LATENCY_OPERATIONS = ("list_schedules", "list_experiments", "get_schedule")
VERTEX_RATE_LIMIT = 10_000.0  # requests/s: the default 8/s is a production quota guard, not a cost


# -- the parent: emulators, config, measurements ------------------------------------------


def control(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback only
        payload = response.read()
    return json.loads(payload) if payload else None


def start_emulators(work: Path) -> dict[str, tuple[Server, str, str]]:
    """flavor -> (server, control URL, endpoint the daemon uses)."""
    started: dict[str, tuple[Server, str, str]] = {}
    vertex_port, vertex_grpc = free_port(), free_port()
    commands = {
        "vertex": ([PYTHON, "-m", "providers.emulators.vertex", "--port", vertex_port, "--grpc-port", vertex_grpc,
                    "--seed", work / "vertex.json"], vertex_port, f"http://127.0.0.1:{vertex_grpc}"),
    }
    for flavor, module in (("kubeflow", "kubeflow"), ("kubernetes", "kubernetes")):
        port = free_port()
        commands[flavor] = ([PYTHON, "-m", f"providers.emulators.{module}", "--port", port,
                             "--seed", work / f"{flavor}.json"], port, f"http://127.0.0.1:{port}")
    try:
        for flavor, (argv, port, endpoint) in commands.items():
            server = Server(f"{flavor}-emulator", argv, work / f"{flavor}-emulator.log", cwd=ROOT)
            started[flavor] = (server, f"http://127.0.0.1:{port}", endpoint)
        for flavor, (server, url, _) in started.items():
            wait_until(lambda url=url: http_ok(f"{url}/_emulator/requests"), 900, f"the {flavor} emulator", server)
    except BaseException:
        for server, _, _ in started.values():
            server.stop()
        raise
    return started


def write_config(work: Path, endpoints: dict[str, str], manifest: dict[str, Any]) -> Path:
    components = manifest["components"]
    config = {
        "registry": {"type": "zenml-sql", "url": f"sqlite:///{work / 'store.db'}"},
        "targets": [
            {"name": TARGET_NAMES["vertex"], "type": "vertex", "project": make_store.VERTEX_PROJECT,
             "location": make_store.VERTEX_LOCATION, "endpoint": endpoints["vertex"], "transport": "grpc",
             "credentials": "anonymous", "components": [components["vertex"]], "list_deadline": "30m",
             "page_size": PAGE_SIZES["vertex"],
             # Raised from the default 8/s: at 8/s, 1000 pages take 2 minutes by design (Vertex's quota).
             "rate_limit": VERTEX_RATE_LIMIT},
            {"name": TARGET_NAMES["kubeflow"], "type": "kubeflow", "host": endpoints["kubeflow"],
             "namespace": make_store.KFP_NAMESPACE, "components": [components["kubeflow"]], "list_deadline": "30m",
             "page_size": PAGE_SIZES["kubeflow"]},
            {"name": TARGET_NAMES["kubernetes"], "type": "kubernetes", "host": endpoints["kubernetes"],
             "namespace": make_store.K8S_NAMESPACE, "components": [components["kubernetes"]],
             "list_deadline": "30m", "page_size": PAGE_SIZES["kubernetes"]},
        ],
        "state": {"url": f"sqlite:///{work / 'state.db'}"},
        "log": {"format": "json", "level": "warning"},
    }
    path = work / "config.yaml"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return path


def expected_pages(manifest: dict[str, Any]) -> dict[str, int]:
    live = {t: manifest["targets"][t]["live"] for t in make_store.TARGETS}
    return {
        "vertex": max(1, math.ceil(live["vertex"] / PAGE_SIZES["vertex"])),
        "kubeflow": max(1, math.ceil(live["kubeflow"] / PAGE_SIZES["kubeflow"]))
        + max(1, math.ceil(manifest["kfp_experiments"] / PAGE_SIZES["kubeflow"])),
        "kubernetes": max(1, math.ceil(live["kubernetes"] / PAGE_SIZES["kubernetes"])),
    }


def run_child(mode: str, config: Path, extra: list[str], log: Path) -> dict[str, Any]:
    started = time.monotonic()
    with open(log, "ab") as stderr:
        done = subprocess.run([PYTHON, "-m", "benchmarks.scale", mode, str(config), *extra], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=stderr, check=False, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed (exit {done.returncode}); see {log}")
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    result["process_wall_seconds"] = time.monotonic() - started
    return result


def request_counts(emulators: dict[str, tuple[Server, str, str]]) -> dict[str, Counter[str]]:
    return {flavor: Counter(r["operation"] for r in control(url, "GET", "/_emulator/requests"))
            for flavor, (_, url, _) in emulators.items()}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_cpu(emulators: dict[str, tuple[Server, str, str]]) -> dict[str, float]:
    return {flavor: process_cpu(server.pid) for flavor, (server, _, _) in emulators.items()}


def clear_logs(emulators: dict[str, tuple[Server, str, str]]) -> None:
    for _, url, _ in emulators.values():
        control(url, "DELETE", "/_emulator/requests")


def measure(n: int, work_root: Path, latency: float, naive_cap: float, profile: bool) -> dict[str, Any]:
    work = work_root / f"n{n}"
    print(f"== N={n}: building the store and seeds in {work}", file=sys.stderr, flush=True)
    manifest = make_store.build(n, work)
    print(f"== N={n}: starting the emulators", file=sys.stderr, flush=True)
    emulators = start_emulators(work)
    try:
        for _, url, _ in emulators.values():
            control(url, "POST", "/_emulator/faults", {op: {"latency": latency} for op in LATENCY_OPERATIONS})
        config = write_config(work, {f: e for f, (_, _, e) in emulators.items()}, manifest)
        clear_logs(emulators)
        print(f"== N={n}: one daemon cycle", file=sys.stderr, flush=True)
        extra = ["--profile", str(work / "cycle.prof")] if profile else []
        cpu_before = emulator_cpu(emulators)
        cycle = run_child("--cycle", config, extra, work / "cycle.log")
        # The emulators share the machine's cores with the daemon: their serving time is
        # inside every page's wall time, so it is reported beside the daemon's own CPU.
        cycle_emulator_cpu = {f: cpu - cpu_before[f] for f, cpu in emulator_cpu(emulators).items()}
        cycle_requests = request_counts(emulators)
        clear_logs(emulators)
        print(f"== N={n}: the naive method (capped at {naive_cap:g}s per target)", file=sys.stderr, flush=True)
        naive = run_child("--naive", config, ["--cap", str(naive_cap)], work / "naive.log")
        naive_requests = request_counts(emulators)
    finally:
        for server, _, _ in emulators.values():
            server.stop()
    pages = expected_pages(manifest)
    lower_bound = max(pages.values()) * latency
    return {"n": n, "latency": latency, "manifest": manifest, "pages": pages, "lower_bound": lower_bound,
            "cycle": cycle, "cycle_requests": {f: dict(c) for f, c in cycle_requests.items()},
            "cycle_emulator_cpu": cycle_emulator_cpu,
            "naive": naive, "naive_requests": {f: dict(c) for f, c in naive_requests.items()}}


# -- the report ----------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| N (registry) | live per target | cycle wall s | lower bound s | cycle / bound | registry read s "
        "| requests / pages (vtx, kfp, k8s) | diff CPU s (max target) | peak RSS MB | naive s | naive / cycle "
        "| drift found = planted |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cycle, naive = r["cycle"], r["naive"]
        live = "/".join(str(r["manifest"]["targets"][t]["live"]) for t in make_store.TARGETS)
        requests = ", ".join(
            f"{sum(r['cycle_requests'][t].values())}/{r['pages'][t]}" for t in make_store.TARGETS)
        diff_cpu = max(t["diff_cpu_seconds"] or 0.0 for t in cycle["targets"].values())
        naive_seconds = naive["estimated_seconds"]
        marker = "~" if naive["extrapolated"] else ""
        rows.append(
            f"| {r['n']:,} | {live} | {cycle['duration_seconds']:.2f} | {r['lower_bound']:.2f} "
            f"| {cycle['duration_seconds'] / r['lower_bound']:.2f}x | {cycle['registry_seconds']:.2f} "
            f"| {requests} | {diff_cpu:.3f} | {cycle['peak_rss_bytes'] / 2**20:.0f} "
            f"| {marker}{naive_seconds:,.0f} | {marker}{naive_seconds / cycle['duration_seconds']:,.0f}x "
            f"| {'yes' if drift_matches(r) else 'NO'} |")
    return "\n".join(rows)


def drift_matches(result: dict[str, Any]) -> bool:
    for flavor in make_store.TARGETS:
        found = result["cycle"]["targets"][TARGET_NAMES[flavor]]
        planted = result["manifest"]["targets"][flavor]
        if found["status"] != "ok" or found["drift"] != {k: v for k, v in planted["drift"].items() if v}:
            return False
        if found["unmanaged"] != planted["unmanaged"]:
            return False
    return True


def detail(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        cycle, naive = r["cycle"], r["naive"]
        lines.append(f"N={r['n']:,}: cycle process CPU {cycle['process_cpu_seconds']:.1f}s, RSS after start-up "
                     f"(SDKs imported, providers built) {cycle['rss_after_start_bytes'] / 2**20:.0f} MB, peak {cycle['peak_rss_bytes'] / 2**20:.0f} MB")
        for flavor in make_store.TARGETS:
            t = cycle["targets"][TARGET_NAMES[flavor]]
            ops = ", ".join(f"{op} {count}" for op, count in sorted(r["cycle_requests"][flavor].items()))
            emulator = r["cycle_emulator_cpu"][flavor]
            lines.append(f"  {flavor}: list {t['list_seconds']:.2f}s for {r['pages'][flavor]} pages "
                         f"(bound {r['pages'][flavor] * r['latency']:.2f}s; emulator CPU {emulator:.2f}s, "
                         f"{emulator / r['pages'][flavor] * 1000:.1f} ms/page), diff CPU {t['diff_cpu_seconds']:.3f}s, "
                         f"requests: {ops}; drift {t['drift']}")
        for flavor, t in naive["targets"].items():
            lines.append(f"  naive {flavor}: {t['done']} of {t['total']} lookups in {t['elapsed']:.1f}s "
                         f"-> {t['estimated_seconds']:,.0f}s for all ({t['note']})")
    return "\n".join(lines)


def machine() -> str:
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs (nproc), {memory} RAM, {platform.platform()}, "
            f"Python {platform.python_version()}")


# -- the children --------------------------------------------------------------------------


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes.

    Not getrusage(RUSAGE_SELF).ru_maxrss: Linux carries the high-water mark across
    exec, so a child of this (large) benchmark process would report the parent's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cycle_child(config_path: str, profile: str | None) -> None:
    """One daemon cycle, exactly as `run --once` builds it (GC setting included); prints its numbers as JSON."""
    from reconciler.cli import build_reconciler, tune_gc
    from reconciler.config import load_config
    from reconciler.logs import configure
    from reconciler.metrics import Metrics

    config = load_config(config_path)
    configure(config.log.format, config.log.level)
    reconciler = build_reconciler(config, Metrics())  # imports the providers' SDKs
    tune_gc()  # what `run` does after building the reconciler
    rss_after_start = peak_rss()
    cpu_started = time.process_time()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    report = reconciler.cycle(1)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    reconciler.close()
    targets = {}
    for target in report.targets:
        diff = target.diff
        targets[target.name] = {
            "status": target.status, "error": target.error, "list_seconds": target.list_seconds,
            "diff_cpu_seconds": target.diff_cpu_seconds,
            "drift": dict(Counter(d.kind.value for d in diff.drift)) if diff else {},
            "expected": len(diff.expected) if diff else None,
            "managed": len(diff.managed) if diff else None,
            "unmanaged": len(diff.unmanaged) if diff else None,
        }
    print(json.dumps({
        "result": report.result, "duration_seconds": report.duration_seconds,
        "registry_seconds": report.registry_seconds, "registry": report.registry.status,
        "registry_schedules": report.registry.schedules, "targets": targets,
        "process_cpu_seconds": time.process_time() - cpu_started,
        "rss_after_start_bytes": rss_after_start, "peak_rss_bytes": peak_rss(),
    }))


def naive_child(config_path: str, cap: float) -> None:
    """The naive method: one filtered request per registry schedule, per target.

    Vertex: `list_schedules(filter='display_name="<name>"')` (what ZenML's scheduling
    tutorial does with `PipelineJobSchedule.list`); KFP: the recurring runs of the
    pipeline's experiment; Kubernetes: a GET of the CronJob named in `cron_job_name`.
    Each target stops after `cap` seconds; the rest is extrapolated from its rate.
    """
    from google.cloud.aiplatform_v1.types import ListSchedulesRequest

    from providers import build_registry, build_target
    from providers.base import null_recorder
    from reconciler.config import load_config

    config = load_config(config_path)
    snapshot = build_registry(config.registry, null_recorder).read()
    by_name = {c.name: c.id for c in snapshot.components}
    results: dict[str, dict[str, Any]] = {}

    def run(target_config: Any) -> None:
        provider = build_target(target_config, null_recorder)
        component_ids = {by_name[c] for c in target_config.components}
        rows = [s for s in snapshot.schedules if s.orchestrator_id in component_ids and not s.archived]
        note = "one filtered list per schedule"
        lookup: Any
        started = time.monotonic()
        if target_config.type == "vertex":
            def lookup(row: Any) -> None:
                request = ListSchedulesRequest(parent=provider.parent, filter=f'display_name="{row.original_name}"')
                provider._call("list_schedules", lambda timeout: provider._page(request, timeout))
        elif target_config.type == "kubeflow":
            experiments = provider._list_all("list_experiments",
                                             provider._experiments.experiment_service_list_experiments,
                                             "experiments", "experiment_id", time.monotonic() + 3600)
            ids = {e["display_name"]: e["experiment_id"] for e in experiments}
            note += " (experiment_id = the pipeline's experiment), after listing the experiments"

            def lookup(row: Any) -> None:
                provider._call("list_schedules", provider._runs.recurring_run_service_list_recurring_runs,
                               page_size=200, namespace=target_config.namespace,
                               experiment_id=ids.get(row.pipeline or "", "none"))
        else:
            note = ("one GET per schedule by its cron_job_name (rows without it: no request, "
                    "extrapolated at the same rate)")

            def lookup(row: Any) -> None:
                name = row.metadata.get("cron_job_name")
                if not name:
                    return
                try:
                    provider._call("get_schedule", provider._batch.read_namespaced_cron_job, "V1CronJob",
                                   name, target_config.namespace)
                except Exception as exc:  # noqa: BLE001 - a 404 is an answer too
                    if getattr(exc, "status", None) != 404:
                        raise
        done = 0
        for row in rows:
            if time.monotonic() - started >= cap:
                break
            try:
                lookup(row)
            except Exception as exc:  # noqa: BLE001 - NOT_FOUND (a zenml_only row) is an answer too
                if getattr(exc, "code", None) != "NOT_FOUND":
                    raise
            done += 1
        elapsed = time.monotonic() - started
        provider.close()
        estimated = elapsed * len(rows) / done if done else float("inf")
        results[target_config.name] = {"done": done, "total": len(rows), "elapsed": elapsed,
                                       "estimated_seconds": estimated, "note": note}

    # One target after another, so no lookup waits on another target's for the GIL; the
    # estimate then takes the slowest target, as if all three ran side by side for free.
    for target_config in config.targets:
        run(target_config)
    print(json.dumps({
        "targets": results,
        "estimated_seconds": max(t["estimated_seconds"] for t in results.values()),
        "extrapolated": any(t["done"] < t["total"] for t in results.values()),
    }))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--cycle":
        profile = args[args.index("--profile") + 1] if "--profile" in args else None
        cycle_child(args[1], profile)
        return
    if args and args[0] == "--naive":
        naive_child(args[1], float(args[args.index("--cap") + 1]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000], help="registry sizes")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every read request")
    parser.add_argument("--naive-cap", type=float, default=20.0, help="seconds the naive method runs per target")
    parser.add_argument("--work", type=Path, default=Path("/tmp/schedule-reconciler-bench"))
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--profile", action="store_true", help="cProfile the cycle's main thread (registry read and diffs; not the listing threads) to nN/cycle.prof")
    options = parser.parse_args(args)
    results = [measure(n, options.work, options.latency, options.naive_cap, options.profile) for n in options.n]
    if options.json:
        options.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"Machine: {machine()}\nLatency per read request: {options.latency * 1000:g} ms\n")
    print(table(results))
    print()
    print(detail(results))


if __name__ == "__main__":
    main()
