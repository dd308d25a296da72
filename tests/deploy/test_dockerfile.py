"""The Dockerfile: its shape (fast checks) and its builder stage replayed for real.

No Docker engine runs here, so the integration test replays the builder stage's
own instructions (ARG, ENV, WORKDIR, COPY honouring .dockerignore, RUN) in a
scratch directory: a fresh venv plays the image's system Python, `/opt/venv`
becomes a temporary path, and the RUN lines run unchanged through `sh -c`. Then
the installed console script starts from that venv. A Dockerfile whose install
steps drift from the lock or the package layout fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from reconciler.config import StateConfig
from tests.deploy import dockerfile
from tests.support.procs import REPO

DOCKERFILE = REPO / "Dockerfile"
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
STATE_DIR = "/var/lib/schedule-reconciler"


@pytest.fixture(scope="module")
def parsed() -> dockerfile.Dockerfile:
    return dockerfile.parse(DOCKERFILE)


def test_two_stages_on_one_pinned_slim_python(parsed: dockerfile.Dockerfile) -> None:
    assert [s.name for s in parsed.stages] == ["builder", None]
    for stage in parsed.stages:
        assert BASE_IMAGE.match(stage.base), stage.base
    assert parsed.stages[0].base == parsed.stages[1].base


def test_final_stage_takes_only_the_venv_from_the_builder(parsed: dockerfile.Dockerfile) -> None:
    builder, final = parsed.stages
    venv = dockerfile.stage_env(builder, parsed.global_args)["VENV"]
    copies = final.all("COPY")
    assert len(copies) == 1
    assert copies[0].args.split() == ["--from=builder", venv, venv]
    for run in final.all("RUN"):
        # No package managers or compilers in the runtime image.
        assert not re.search(r"\b(pip|uv|apt-get|apt|gcc|make)\b", run.args), run.args


def test_final_stage_runs_non_root_read_only(parsed: dockerfile.Dockerfile) -> None:
    final = parsed.stages[1]
    users = final.all("USER")
    assert len(users) == 1 and re.fullmatch(r"\d+:\d+", users[0].args), "USER must be numeric uid:gid"
    assert users[0].args.split(":")[0] != "0"
    assert final.instructions.index(users[0]) > max(final.instructions.index(r) for r in final.all("RUN"))
    env = dockerfile.stage_env(final, parsed.global_args)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    volumes = final.all("VOLUME")[0].json_args()
    assert volumes is not None and STATE_DIR in volumes and "/tmp" in volumes
    # The daemon's default state file must live in the writable volume.
    assert StateConfig().url == f"sqlite://{STATE_DIR}/state.db"
    assert env["HOME"] == "/tmp"  # libraries that write under ~ get a writable home


def test_entrypoint_and_labels(parsed: dockerfile.Dockerfile) -> None:
    final = parsed.stages[1]
    assert final.all("ENTRYPOINT")[0].json_args() == ["schedule-reconciler"]
    assert final.all("CMD")[0].json_args() == ["run"]
    assert final.all("EXPOSE")[0].args == "9464"
    env = dockerfile.stage_env(final, parsed.global_args)
    labels: dict[str, str] = {}
    for label in final.all("LABEL"):
        labels.update(dockerfile.key_values(label.args, env))
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.base.name"] == final.base
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.version"] == project["version"]


def test_dockerignore_keeps_the_context_clean_but_not_the_sources(parsed: dockerfile.Dockerfile) -> None:
    patterns = dockerfile.ignore_patterns(REPO)
    for path in (".venv/bin/python", ".git/config", ".cache/uv/bin/uv", "reconciler/__pycache__/x.pyc",
                 "tests/conftest.py"):
        assert dockerfile.ignored(path, patterns), path
    for copy in parsed.stage("builder").all("COPY"):
        for source in copy.args.split()[:-1]:
            assert not dockerfile.ignored(source, patterns), source


def replay_builder(parsed: dockerfile.Dockerfile, context: Path, root: Path) -> Path:
    """Run the builder stage's instructions under `root`; return the installed venv."""
    base = root / "base"
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
    venv = root / "venv"
    env: dict[str, str] = {
        "PATH": f"{base / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(root)),
    }
    # The uv binary's cache and index settings of this machine still apply.
    for key in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    workdir = root
    patterns = dockerfile.ignore_patterns(context)
    for instruction in parsed.stage("builder").instructions:
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ARG":
            dockerfile.declare_arg(args, env, parsed.global_args)
        elif keyword == "ENV":
            env.update(dockerfile.key_values(args, env))
            # The only substitutions: the venv path, and reuse of the local uv cache
            # (the image must not keep one; the test need not download twice).
            env["VENV"] = str(venv)
            env.pop("UV_NO_CACHE", None)
        elif keyword == "WORKDIR":
            workdir = root / dockerfile.expand(args, env).lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = [dockerfile.expand(w, env) for w in args.split()]
            assert not any(w.startswith("--") for w in words), f"unsupported COPY flags: {args}"
            dockerfile.copy_into(context, words[:-1], workdir, words[-1], patterns)
        elif keyword == "RUN":
            assert instruction.json_args() is None, "RUN must use the shell form"
            result = subprocess.run(["sh", "-c", args], cwd=workdir, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"RUN {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        else:
            raise AssertionError(f"the builder stage uses {keyword}, which this replay does not know")
    return venv


def normalize(requirement: str) -> str:
    """`Foo_Bar==1.0` -> `foo-bar==1.0` (PEP 503 names, versions kept)."""
    name, _, version = requirement.strip().partition("==")
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version.split()[0]


@pytest.mark.integration
def test_builder_stage_installs_a_working_daemon(parsed: dockerfile.Dockerfile,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("image")
    venv = replay_builder(parsed, REPO, root)
    elsewhere = tmp_path_factory.mktemp("cwd")  # not the repo: imports must come from the venv
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(elsewhere), "PYTHONDONTWRITEBYTECODE": "1"}

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import reconciler, providers; "
                            "print(reconciler.__file__); print(providers.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv), line

    # Exactly the runtime lock, nothing more and nothing less: no test tools in the image.
    frozen = subprocess.run([str(REPO / ".cache" / "uv" / "bin" / "uv"), "pip", "freeze", "--python",
                             str(venv / "bin" / "python")], capture_output=True, text=True, check=True)
    installed = {normalize(line) for line in frozen.stdout.splitlines() if "==" in line}
    locked = pins(REPO / "requirements" / "runtime.txt")
    assert installed == locked
    assert not {name.split("==")[0] for name in installed} & {"pytest", "hypothesis"}

    helped = subprocess.run([str(venv / "bin" / "schedule-reconciler"), "--help"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "plan", "check-config"):
        assert command in helped.stdout

    examples = sorted((REPO / "config").glob("kubernetes-*.yaml"))
    assert examples, "config/kubernetes-*.yaml examples are missing"
    for example in examples:
        checked = subprocess.run([str(venv / "bin" / "schedule-reconciler"), "check-config", "--config",
                                  str(example)], cwd=elsewhere, env={**env, "ZENML_STORE_URL": "sqlite:////nonexistent/zenml.db"},
                                 capture_output=True, text=True)
        assert checked.returncode == 0, f"{example.name}: {checked.stdout}{checked.stderr}"


def pins(path: Path) -> set[str]:
    return {normalize(line) for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")}


def test_the_runtime_lock_is_the_full_lock_without_the_test_extras() -> None:
    runtime, full = pins(REPO / "requirements" / "runtime.txt"), pins(REPO / "requirements" / "lock.txt")
    assert runtime <= full  # the same versions the tests ran with
    assert {line.split("==")[0] for line in full - runtime} <= {
        "pytest", "pytest-timeout", "hypothesis", "iniconfig", "pluggy", "pygments", "sortedcontainers",
        "attrs", "exceptiongroup", "packaging"}
