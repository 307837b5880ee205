"""Loading deploy/ for the tests: YAML documents, a minimal ``kustomize build``, schema validators, the CLI.

No kustomize or kubectl binary is needed: :func:`build` resolves ``resources`` (files and directories),
sets ``namespace`` on namespaced objects, adds ``labels`` and applies ``images`` to every ``containers`` /
``initContainers`` list at any depth (kustomize's image transformer does the same). That is all the
kustomizations in deploy/ use; :data:`tests.deploy.crd_schemas.KUSTOMIZATION` rejects any other field, so
this model cannot silently fall behind them.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import typer
import yaml
from referencing import Registry, Resource

from tests.conftest import REPO
from tests.deploy.crd_schemas import KUSTOMIZATION, Schema

DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
NAMESPACE = "fleetwise"
"""The namespace every kustomization in deploy/kubernetes puts its objects in."""

ENTRY_POINTS = ("", "keda", "hpa", "ray")
"""Kustomizations users apply (relative to deploy/kubernetes; "" is the top level)."""

APPLIED_SEPARATELY = frozenset({"hpa/prometheus-adapter-config.yaml"})
"""Manifests that belong to another namespace's install and are applied on their own (README says how)."""

_CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"})


@dataclass(frozen=True)
class Doc:
    """One YAML document of a manifest file."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def where(self) -> str:
        """``file#index kind/name`` for assertion messages."""
        rel = self.path.relative_to(REPO)
        return f"{rel}#{self.index} {self.body.get('kind')}/{self.body.get('metadata', {}).get('name')}"


def load_docs(path: Path) -> list[Doc]:
    """Every non-empty YAML document of a file."""
    with path.open(encoding="utf-8") as f:
        return [Doc(path, i, d) for i, d in enumerate(yaml.safe_load_all(f)) if d]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/kubernetes (kustomization.yaml files excluded)."""
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def all_docs() -> list[Doc]:
    """Every document of every manifest file under deploy/kubernetes."""
    return [d for p in manifest_files() for d in load_docs(p)]


def kustomization_dirs() -> list[Path]:
    """Every folder with a kustomization.yaml."""
    return sorted(p.parent for p in KUBE.rglob("kustomization.yaml"))


def build(folder: Path) -> list[Doc]:
    """Render a kustomization the way ``kustomize build`` would for the fields deploy/ uses.

    Raises:
        jsonschema.ValidationError: the kustomization uses a field this model does not implement.
        FileNotFoundError: a resource path does not exist.
    """
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(spec, KUSTOMIZATION)
    docs: list[Doc] = []
    for entry in spec["resources"]:
        target = (folder / entry).resolve()
        if target.is_dir():
            docs.extend(build(target))
        elif target.is_file():
            docs.extend(load_docs(target))
        else:
            raise FileNotFoundError(f"{folder / 'kustomization.yaml'}: resource {entry!r} does not exist")
    labels: dict[str, str] = {}
    for group in spec.get("labels", []):
        labels.update(group.get("pairs", {}))
    out = []
    for d in docs:
        body = json.loads(json.dumps(d.body))  # a deep copy
        meta = body.setdefault("metadata", {})
        if "namespace" in spec and body.get("kind") not in _CLUSTER_SCOPED:
            meta["namespace"] = spec["namespace"]
        if labels:
            meta.setdefault("labels", {}).update(labels)
        for image in spec.get("images", []):
            _set_image(body, image)
        out.append(Doc(d.path, d.index, body))
    return out


def _set_image(node: object, image: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                for c in value:
                    name, _, tag = str(c.get("image", "")).partition(":")
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
            _set_image(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_image(item, image)


def pod_specs(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, pod template)`` of every pod a workload or KubeRay resource creates."""
    spec = body.get("spec", {})
    kind = body.get("kind")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield "template", spec["template"]
    cluster = spec.get("rayClusterSpec", spec) if kind in {"RayJob", "RayCluster"} else None
    if cluster is not None:
        yield "head", cluster["headGroupSpec"]["template"]
        for g in cluster.get("workerGroupSpecs", []):
            yield f"worker {g['groupName']}", g["template"]


def fleetwise_image(container: dict[str, Any]) -> bool:
    """Whether a container runs the fleetwise image built from deploy/Dockerfile."""
    return str(container.get("image", "")).partition(":")[0].rsplit("/", 1)[-1] == "fleetwise"


# --- schema validation ----------------------------------------------------------------------------------

K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
"""Oldest Kubernetes release the manifests claim to support, and the newest kubernetes-validate knows."""


@cache
def _k8s_registry(version: str) -> Registry[Any]:
    mm = kubernetes_validate.utils.major_minor(version)
    name = f"v{mm}.0-local-strict"
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / name
    defs = json.loads((base / "_definitions.json").read_text(encoding="utf-8"))
    return Resource.from_contents(defs) @ Registry()


def validate_custom(body: dict[str, Any], schema: Schema, version: str) -> None:
    """Validate a custom resource or config against ``schema``, resolving Kubernetes ``$ref``s at ``version``.

    Raises:
        jsonschema.ValidationError: the first violation.
    """
    validator = jsonschema.Draft202012Validator(schema, registry=_k8s_registry(version))
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise errors[0]


# --- the real CLI ---------------------------------------------------------------------------------------

@cache
def _cli() -> Any:
    from planner.cli.main import build_app

    return typer.main.get_command(build_app())


def verb_exists(verb: str) -> bool:
    """Whether ``fleetwise VERB`` is a command (for prose that names a verb without its options)."""
    return _cli().get_command(None, verb) is not None


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``fleetwise ARGS`` with the real command tree, without running anything.

    Returns:
        the verb and its parsed parameters.

    Raises:
        AssertionError: unknown verb.
        Exception: click's usage errors (unknown option, bad value) as the CLI would report them.
    """
    group = _cli()
    verb, rest = args[0], args[1:]
    cmd = group.get_command(None, verb)
    assert cmd is not None, f"fleetwise has no verb {verb!r} (has: {', '.join(group.list_commands(None))})"
    while hasattr(cmd, "get_command") and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(None, rest[0])
        assert sub is not None, f"fleetwise {verb} has no subcommand {rest[0]!r}"
        verb, cmd, rest = f"{verb} {rest[0]}", sub, rest[1:]
    ctx = cmd.make_context(verb, list(rest))
    return verb, dict(ctx.params)


def split_command(line: str) -> list[str]:
    """A shell command line as argv (comments and line continuations removed)."""
    return shlex.split(re.sub(r"\\\n", " ", line), comments=True)
