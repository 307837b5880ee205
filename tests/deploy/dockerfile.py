"""A small Dockerfile reader for tests/deploy: instructions per stage, with ARG defaults substituted.

Enough of the Dockerfile reference (https://docs.docker.com/reference/dockerfile/) for deploy/Dockerfile:
line continuations, comments, ``ARG`` before ``FROM`` (global, usable in ``FROM``), ``FROM ... AS name``
stages, and exec-form (JSON) ``ENTRYPOINT``/``CMD``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tests.conftest import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword (upper case), its argument text, and its first line number."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """A build stage: its base image (ARGs substituted), its name, and its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction with this keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions (continuations joined, comments and blank lines dropped).

    >>> [(i.keyword, i.args) for i in instructions("FROM a\\nRUN x \\\\\\n  && y\\n# c\\nUSER 1")]
    [('FROM', 'a'), ('RUN', 'x && y'), ('USER', '1')]
    """
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(b for b in buf if b)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = []
    return out


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "ARG" and not result:
            name, _, default = ins.args.partition("=")
            global_args[name.strip()] = default.strip()
        elif ins.keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", ins.args, flags=re.I)
            assert m, f"line {ins.line}: cannot read FROM {ins.args!r}"
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda g: global_args.get(g.group(1) or g.group(2), ""),
                          m.group(1))
            result.append(Stage(base=base, name=m.group(2)))
        else:
            assert result or ins.keyword == "ARG", f"line {ins.line}: {ins.keyword} before FROM"
            result[-1].instructions.append(ins)
    return global_args, result


def exec_form(ins: Instruction) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD (shell form fails: signals would not reach PID 1)."""
    value = json.loads(ins.args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins
    return value


def image_uid() -> int:
    """The numeric UID the final stage runs as (its last ``USER``)."""
    _, st = stages(DOCKERFILE.read_text(encoding="utf-8"))
    users = st[-1].all("USER")
    assert users, "the final stage has no USER: the image would run as root"
    uid = users[-1].args.split(":", 1)[0]
    assert uid.isdigit(), f"USER {uid!r}: use a numeric UID so runAsNonRoot can verify it"
    return int(uid)
