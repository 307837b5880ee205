"""The README's "Run it on a cluster" section matches deploy/: its paths exist, its fleetwise commands parse
with the real CLI, its kubectl targets name objects the manifests define, its metric and alert names are real.

The section is checked by :func:`check_section`; the test skips (saying why) only while README.md has no
such section.
"""

from __future__ import annotations

import re

import pytest
import yaml

from planner.live.names import sample_names
from tests.conftest import REPO
from tests.deploy.manifests import KUBE, all_docs, parse_cli, split_command, verb_exists
from tests.deploy.queries import RULES

HEADING = "## Run it on a cluster"
_PATH = re.compile(r"(?<![\w/.-])((?:deploy|planner|tests)/[A-Za-z0-9_./*-]*[A-Za-z0-9_*])")


def section(text: str) -> str | None:
    """The section's text (up to the next level-2 heading), or None."""
    if HEADING not in text:
        return None
    return text.split(HEADING, 1)[1].split("\n## ", 1)[0]


def _bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip()]


def check_section(text: str) -> list[str]:
    """Every mismatch between a "Run it on a cluster" section and deploy/ (empty: it matches)."""
    problems: list[str] = []
    from planner.catalog import load_catalog

    cat = load_catalog()
    docs = [d.body for d in all_docs()]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    for path in set(_PATH.findall(text)):
        if not list(REPO.glob(path)):
            problems.append(f"path {path} does not exist")

    commands = [ln for ln in _bash_lines(text) if ln.startswith("fleetwise ")]
    commands += [c for c in re.findall(r"`([^`\n]+)`", text) if c.startswith("fleetwise ")]
    if not commands:
        problems.append("no fleetwise command shown")
    for cmd in commands:
        argv = split_command(cmd)
        if len(argv) == 2:  # prose naming a verb, e.g. "the `fleetwise dashboard`"
            if not verb_exists(argv[1]):
                problems.append(f"{cmd!r}: no such verb")
            continue
        try:
            _, params = parse_cli(argv[1:])
        except Exception as exc:
            problems.append(f"{cmd!r} does not parse: {exc}")
            continue
        try:
            if "model" in params:
                cat.model(params["model"])
            for gpu in str(params.get("gpus", "all")).split(","):
                if gpu != "all":
                    cat.gpu(gpu)
        except Exception as exc:
            problems.append(f"{cmd!r}: {exc}")

    for line in _bash_lines(text):
        argv = split_command(line.strip("()"))
        if argv[:3] == ["kubectl", "apply", "-k"] and not (REPO / argv[3] / "kustomization.yaml").is_file():
            problems.append(f"{line!r}: no kustomization.yaml in {argv[3]}")
        if argv[:3] == ["kubectl", "apply", "-f"] and not (REPO / argv[3]).is_file():
            problems.append(f"{line!r}: no file {argv[3]}")
        for ref in re.findall(r"\b(svc|job)/([\w-]+)", line):
            kind = {"svc": "Service", "job": "RayJob"}[ref[0]]
            if (kind, ref[1]) not in names and not (kind == "Service" and ref[1].endswith("-head-svc")
                                                    and ("RayCluster", ref[1][: -len("-head-svc")]) in names):
                problems.append(f"{line!r}: no {kind} {ref[1]} in deploy/kubernetes")
        m = re.search(r"cd (deploy/\S+) && kustomize edit set image (\w+)=", line)
        if m:
            spec = yaml.safe_load((REPO / m.group(1) / "kustomization.yaml").read_text(encoding="utf-8"))
            if m.group(2) not in {i["name"] for i in spec.get("images", [])}:
                problems.append(f"{line!r}: {m.group(1)} has no image {m.group(2)} to set")

    for metric in set(re.findall(r"\b(fleetwise_[a-z_]+)", text)):
        if metric not in sample_names():
            problems.append(f"metric {metric} is not exported")
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for alert in set(re.findall(r"`(Fleetwise[A-Za-z]+)`", text)):
        if alert not in alerts:
            problems.append(f"alert {alert} is not in rules.yml")
    so = next(d for d in docs if d["kind"] == "ScaledObject")
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    for code in re.findall(r"`([^`\n]*fleetwise_desired_replicas\{namespace=[^`\n]*)`", text):
        if code != query:
            problems.append(f"README shows the KEDA query {code!r}, the ScaledObject has {query!r}")
    return problems


def test_readme_cluster_section_matches_deploy() -> None:
    text = section((REPO / "README.md").read_text(encoding="utf-8"))
    if text is None:
        pytest.skip(f"README.md has no {HEADING!r} section yet")
    assert check_section(text) == []


def test_section_check_can_fail() -> None:
    bad = """
```bash
kubectl apply -k deploy/kubernetes/nope
fleetwise autoscale --prometheus-url http://p:9090 --config pools.yaml --bogus-flag
fleetwise plan --model Llama-9-1T
kubectl -n fleetwise port-forward svc/not-there 9464
```
See `deploy/grafana/missing.json`, `FleetwiseNoSuchAlert`, `fleetwise nosuchverb`
and fleetwise_desired_replica.
"""
    problems = " ".join(check_section(bad))
    for needle in ("deploy/kubernetes/nope", "--bogus-flag", "not-there", "missing.json",
                   "FleetwiseNoSuchAlert", "fleetwise_desired_replica ", "Llama-9-1T", "nosuchverb"):
        assert needle.strip() in problems, needle
    assert KUBE.is_dir()
