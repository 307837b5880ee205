"""deploy/Dockerfile read offline (no docker daemon here): pinned slim base, multi-stage, non-root, and the
build context it copies exists, is not ignored, and covers every package the distribution ships."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.conftest import REPO
from tests.deploy.dockerfile import DOCKERFILE, exec_form, image_uid, stages
from tests.deploy.manifests import KUBE, fleetwise_image, load_docs, pod_specs

TEXT = DOCKERFILE.read_text(encoding="utf-8")
GLOBAL_ARGS, STAGES = stages(TEXT)
FINAL = STAGES[-1]


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(path: str) -> bool:
    return any(not p.startswith("!")
               and (fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")))
               for p in _dockerignore())


def test_multi_stage_on_one_pinned_slim_python_311_base() -> None:
    assert len(STAGES) >= 2, "build and runtime stages"
    for st in STAGES:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", st.base), (
            f"base {st.base!r} is not a pinned python:3.11.N-slim image")
    assert len({st.base for st in STAGES}) == 1, "build and runtime must share the base (same Python ABI)"


def test_runtime_runs_as_a_created_non_root_user() -> None:
    uid = image_uid()
    assert uid >= 1000
    users = FINAL.all("USER")
    assert all(u.args.split(":")[0] not in {"0", "root"} for u in users)
    # The UID exists in the image (created by useradd before USER switches to it).
    created = " ".join(r.args for r in FINAL.all("RUN"))
    assert re.search(rf"useradd\b[^&;]*--uid {uid}\b", created), "USER's UID is never created"
    last_user = max(u.line for u in users)
    assert all(r.line < last_user for r in FINAL.all("RUN")), "RUN after USER would run as the app user only"


def test_entrypoint_is_the_fleetwise_cli_in_exec_form() -> None:
    (entry,) = FINAL.all("ENTRYPOINT")
    argv = exec_form(entry)
    assert argv[-1] == "fleetwise"
    for cmd in FINAL.all("CMD"):
        exec_form(cmd)


def test_build_installs_the_package_from_the_copied_sources() -> None:
    build = STAGES[0]
    installs = [r.args for r in build.all("RUN")]
    assert any(re.search(r"pip install (\S+ )*\.(\s|$)", a + " ") for a in installs), "no `pip install .`"
    copied = [tok for c in build.all("COPY") for tok in c.args.split()[:-1] if not tok.startswith("--")]
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src), f"COPY {src}: excluded by .dockerignore"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(copied), f"packages not copied into the image: {packages - set(copied)}"
    assert {"pyproject.toml", "README.md"} <= set(copied)


def test_runtime_copies_only_from_earlier_stages() -> None:
    names = {st.name for st in STAGES[:-1]}
    for c in FINAL.all("COPY"):
        m = re.search(r"--from=(\S+)", c.args)
        assert m and m.group(1) in names, f"line {c.line}: runtime COPY must come from a build stage"


def test_dockerignore_keeps_the_context_small() -> None:
    for heavy in (".git", ".venv", "tests", "**/__pycache__"):
        assert heavy in _dockerignore(), heavy


def test_exposed_ports_cover_the_ports_the_manifests_use() -> None:
    exposed = {int(p.split("/")[0]) for e in FINAL.all("EXPOSE") for p in e.args.split()}
    used = {p["containerPort"] for path in KUBE.rglob("*.yaml") for d in load_docs(path)
            for _, pod in pod_specs(d.body) for c in pod["spec"]["containers"] if fleetwise_image(c)
            for p in c.get("ports", [])}
    assert used and used <= exposed, f"ports {used - exposed} not EXPOSEd"


def test_apt_installs_are_lean() -> None:
    for st in STAGES:
        for r in st.all("RUN"):
            if "apt-get install" in r.args:
                assert "--no-install-recommends" in r.args and "rm -rf /var/lib/apt/lists" in r.args, r.line
