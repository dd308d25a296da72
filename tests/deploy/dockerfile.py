"""A small Dockerfile reader: stages and instructions, enough to replay a builder stage.

Docker's own parser is not available here (no engine), and the image's install
steps must be tested as written, so the tests read the Dockerfile themselves.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined

    def json_args(self) -> list[str] | None:
        """The exec form (`["a", "b"]`) as a list; None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword}: exec form must be a JSON list of strings")
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")


def declare_arg(args: str, env: dict[str, str], global_args: dict[str, str]) -> None:
    """`ARG X=default` / `ARG X` inside a stage: a global ARG is visible only when redeclared."""
    key, sep, default = args.strip().partition("=")
    if sep:
        env.setdefault(key, expand(default, env))
    elif key in global_args:
        env.setdefault(key, global_args[key])
    else:
        env.setdefault(key, "")


def stage_env(stage: "Stage", global_args: dict[str, str]) -> dict[str, str]:
    """The variables a stage's instructions see at its end (build args left at their defaults)."""
    env: dict[str, str] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "ARG":
            declare_arg(instruction.args, env, global_args)
        elif instruction.keyword == "ENV":
            env.update(key_values(instruction.args, env))
    return env


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        instruction = Instruction(keyword, rest.strip())
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(expand(words[0], global_args), name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{keyword} before the first FROM")
            key, _, default = rest.strip().partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def expand(text: str, env: dict[str, str]) -> str:
    """Docker's `${VAR}` / `$VAR` substitution in FROM, ENV, COPY, WORKDIR, LABEL."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def key_values(args: str, env: dict[str, str]) -> dict[str, str]:
    """`ENV A=1 B="two words"` -> {"A": "1", "B": "two words"}, with substitution."""
    result: dict[str, str] = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"only the KEY=value form is supported, got {word!r}")
        result[key] = expand(value, {**env, **result})
    return result


def ignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in relative.split("/")):
                return True
            if fnmatch.fnmatch(relative, tail) or fnmatch.fnmatch(relative, pattern):
                return True
        elif fnmatch.fnmatch(relative, pattern) or relative.split("/")[0] == pattern:
            return True
    return False


def copy_into(context: Path, sources: list[str], workdir: Path, dest: str, patterns: list[str]) -> None:
    """COPY semantics for plain files and directories (a directory's contents are copied).

    `dest` is the instruction's destination, relative to `workdir` (the stage's WORKDIR).
    """
    target_root = workdir / dest
    into_dir = len(sources) > 1 or dest.endswith("/") or dest in {".", "./"}
    for source in sources:
        src = context / source
        if not src.exists():
            raise FileNotFoundError(f"COPY {source}: not in the build context")
        if ignored(source, patterns):
            raise FileNotFoundError(f"COPY {source}: excluded by .dockerignore")
        if src.is_dir():
            for item in sorted(src.rglob("*")):
                relative = item.relative_to(context).as_posix()
                if item.is_dir() or ignored(relative, patterns):
                    continue
                target = target_root / item.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)
        else:
            target = target_root / src.name if into_dir else target_root
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
