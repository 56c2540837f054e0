"""Ship artefacts: deploy/ builds offline into valid Kubernetes objects, and the image's promises
(Dockerfile) match what the manifests and the Helm values assume, so none can drift alone."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from cmp.server.client import socket_path
from cmp.settings import PARAMETERS_BY_NAME, plugin_config
from tests.support.kustomize import K8S_VERSIONS, kubectl, kustomize_build, schema_problems

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SIDECAR = "tagpin"
REPO_SERVER = "argocd-repo-server"
PLUGIN_CONFIG_PATH = PurePosixPath("/home/argocd/cmp-server/config/plugin.yaml")
ECR_ACTIONS = {
    "ecr:DescribeImages",
    "ecr:ListImages",
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
}


# --- kustomize -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    return kustomize_build(DEPLOY)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", REPO_SERVER)["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name}, found {len(matches)}"
    return matches[0]


def mounts(c: dict[str, Any]) -> dict[str, str]:
    """mountPath → volume name."""
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}


def volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in spec["volumes"]}


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def read_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Every instruction in order; continuations joined, comments dropped. Enough of the
    Dockerfile grammar for the checks below."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    instructions = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage, each list starting with its FROM (the global ARGs before
    the first FROM are `global_args`)."""
    stages: list[list[Instruction]] = []
    for instruction in dockerfile_instructions(text):
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def global_args(text: str) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults: what FROM lines may use."""
    found: dict[str, str] = {}
    for instruction in dockerfile_instructions(text):
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            found[name] = default
    return found


def stage_args(stage: list[Instruction]) -> dict[str, str]:
    """The ARGs a stage declares, with their defaults."""
    return dict(
        (i.args.partition("=")[0], i.args.partition("=")[2]) for i in stage if i.keyword == "ARG"
    )


def key_values(args: str) -> dict[str, str]:
    """`ENV`/`LABEL` arguments in KEY=value form."""
    return dict(token.split("=", 1) for token in shlex.split(args))


@dataclass(frozen=True)
class Copy:
    flags: tuple[str, ...]
    sources: tuple[str, ...]
    dest: str


def copy_of(instruction: Instruction) -> Copy:
    tokens = shlex.split(instruction.args)
    flags = tuple(t for t in tokens if t.startswith("--"))
    paths = [t for t in tokens if not t.startswith("--")]
    return Copy(flags, tuple(paths[:-1]), paths[-1])


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return dockerfile_stages((REPO / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final_stage(stages: list[list[Instruction]]) -> list[Instruction]:
    return stages[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def image_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            env.update(key_values(instruction.args))
    return env


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, regex) per line; a pattern that matches a directory covers its contents."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex + "(?:/.*)?")))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    included = True
    for negated, regex in rules:
        if regex.fullmatch(path):
            included = negated
    return included


@pytest.mark.parametrize(
    ("path", "included"),
    [
        ("pyproject.toml", True),
        ("cmp/settings.py", True),
        ("cmp/registry/ecr.py", True),
        ("cmp/__pycache__/settings.cpython-311.pyc", False),
        (".venv/bin/python", False),
        (".git/config", False),
        ("tests/e2e/test_deploy.py", False),
        ("deploy/kustomization.yaml", False),
        ("image/kubectl-linux-amd64", True),  # an offline build's kustomize (image/README.md)
        ("build/image/tagpin_dev.cdx.json", False),
    ],
)
def test_build_context_holds_only_what_the_image_needs(path: str, included: bool) -> None:
    rules = dockerignore_rules((REPO / ".dockerignore").read_text())
    assert in_build_context(path, rules) is included


# --- the overlay -----------------------------------------------------------------------------


def test_overlay_builds_offline_into_the_repo_server_and_its_rbac(
    built: list[dict[str, Any]],
) -> None:
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == [
        ("Deployment", REPO_SERVER),
        ("Role", "tagpin-repo-server"),
        ("RoleBinding", "tagpin-repo-server"),
        ("ServiceAccount", REPO_SERVER),
    ]
    assert {o["metadata"]["namespace"] for o in built} == {"argocd"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_built_object_is_valid_kubernetes(built: list[dict[str, Any]], version: str) -> None:
    assert schema_problems(built, version) == []


def test_sidecar_runs_the_cmp_server_hardened(built: list[dict[str, Any]]) -> None:
    sidecar = container(pod_spec(built), SIDECAR)
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert set(sidecar["resources"]) == {"requests", "limits"}
    assert "memory" in sidecar["resources"]["limits"]


def test_sidecar_image_is_set_by_the_overlay(built: list[dict[str, Any]]) -> None:
    image = container(pod_spec(built), SIDECAR)["image"]
    # The component uses the logical name `tagpin`; unreplaced it would pull docker.io/tagpin.
    reference = r"[a-z0-9.-]+\.[a-z]+(:\d+)?/[a-z0-9./_-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?"
    assert re.fullmatch(reference, image), image


def test_sidecar_shares_the_cmp_volumes_with_the_stock_containers(
    built: list[dict[str, Any]],
) -> None:
    spec = pod_spec(built)
    sidecar = mounts(container(spec, SIDECAR))
    # copyutil puts argocd-cmp-server into var-files; the repo-server finds sockets in plugins.
    assert sidecar["/var/run/argocd"] == mounts(container(spec, "copyutil"))["/var/run/argocd"]
    plugins = "/home/argocd/cmp-server/plugins"
    assert sidecar[plugins] == mounts(container(spec, REPO_SERVER))[plugins]
    for name in sidecar.values():
        assert name in volumes(spec), f"sidecar mounts undefined volume {name}"


def test_sidecar_has_its_own_tmp(built: list[dict[str, Any]]) -> None:
    spec = pod_spec(built)
    tmp_volume = mounts(container(spec, SIDECAR))["/tmp"]
    assert volumes(spec)[tmp_volume] == {"name": tmp_volume, "emptyDir": {}}
    # Argo CD: never share the repo-server's /tmp with a plugin (path traversal).
    assert tmp_volume not in mounts(container(spec, REPO_SERVER)).values()


def test_only_the_sidecar_gets_cloud_and_cluster_credentials(built: list[dict[str, Any]]) -> None:
    deployment = find(built, "Deployment", REPO_SERVER)
    spec = pod_spec(built)
    others = {c["name"] for c in spec["containers"] + spec["initContainers"]} - {SIDECAR}
    skipped = deployment["spec"]["template"]["metadata"]["annotations"][
        "eks.amazonaws.com/skip-containers"
    ]
    assert set(skipped.split(",")) == others
    assert spec["automountServiceAccountToken"] is False
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    token_volume = mounts(container(spec, SIDECAR))[token_dir]
    sources = volumes(spec)[token_volume]["projected"]["sources"]
    assert {"path": "token", "expirationSeconds": 3607} in [
        s.get("serviceAccountToken") for s in sources
    ]
    for name in others:
        assert token_volume not in mounts(container(spec, name)).values()


def test_sidecar_knows_the_argo_cd_namespace(built: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in container(pod_spec(built), SIDECAR)["env"]}
    assert env["ARGOCD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["TAGPIN_APP_LOOKUP"]["value"] in {"auto", "on", "off"}


def test_service_account_can_read_applications_and_nothing_else(
    built: list[dict[str, Any]],
) -> None:
    deployment = find(built, "Deployment", REPO_SERVER)
    account = find(built, "ServiceAccount", pod_spec(built)["serviceAccountName"])
    role = find(built, "Role", "tagpin-repo-server")
    binding = find(built, "RoleBinding", "tagpin-repo-server")
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": deployment["metadata"]["namespace"],
        }
    ]
    assert re.fullmatch(
        r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+",
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
    )


def test_iam_policy_grants_exactly_the_ecr_calls_tagpin_makes() -> None:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert {s["Effect"] for s in statements} == {"Allow"}
    actions = [a for s in statements for a in s["Action"]]
    assert sorted(actions) == sorted(ECR_ACTIONS)
    for statement in statements:
        assert re.fullmatch(r"arn:aws:ecr:[\w*-]+:\d{12}:repository/.+", statement["Resource"])


# --- remote base and Helm values stay the same install ---------------------------------------


def test_remote_overlay_is_the_offline_one_on_the_real_install() -> None:
    offline = read_yaml(DEPLOY / "kustomization.yaml")
    remote = read_yaml(DEPLOY / "remote" / "kustomization.yaml")
    assert remote["namespace"] == offline["namespace"]
    assert remote["images"] == offline["images"]
    assert remote["components"] == ["../tagpin"]
    assert offline["components"] == ["tagpin"]
    (url,) = remote["resources"]
    match = re.fullmatch(
        r"https://raw\.githubusercontent\.com/argoproj/argo-cd/(v\d+\.\d+\.\d+)/manifests/install\.yaml",
        url,
    )
    assert match, url
    # The offline copy must come from the same release the remote overlay pins.
    copied = read_yaml_docs(DEPLOY / "base-upstream" / "argocd-repo-server.yaml")
    images = {
        c["image"]
        for doc in copied
        if doc["kind"] == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
        + doc["spec"]["template"]["spec"]["initContainers"]
    }
    assert images == {f"quay.io/argoproj/argocd:{match.group(1)}"}


def test_helm_values_describe_the_same_sidecar(built: list[dict[str, Any]]) -> None:
    values = read_yaml(DEPLOY / "helm" / "values-argo-cd.yaml")["repoServer"]
    deployment = find(built, "Deployment", REPO_SERVER)
    spec = pod_spec(built)
    sidecar = container(spec, SIDECAR)
    assert values["extraContainers"] == [sidecar]
    added = set(mounts(sidecar).values()) - {"var-files", "plugins"}  # the chart defines those
    assert {v["name"]: v for v in values["volumes"]} == {
        name: volumes(spec)[name] for name in added
    }
    assert values["podAnnotations"] == deployment["spec"]["template"]["metadata"]["annotations"]
    assert values["automountServiceAccountToken"] is spec["automountServiceAccountToken"]
    account = find(built, "ServiceAccount", spec["serviceAccountName"])
    assert values["serviceAccount"]["annotations"] == account["metadata"]["annotations"]
    assert values["rbac"] == find(built, "Role", "tagpin-repo-server")["rules"]


# --- the image keeps the promises the manifests rely on ---------------------------------------


def test_every_stage_starts_from_the_same_digest_pinned_base(
    stages: list[list[Instruction]],
) -> None:
    """One base, a build argument whose default is python:3.11-slim-bookworm pinned by digest
    (CI passes a Debian base of its own); every stage starts from it, from another stage, or
    from nothing (the SBOM's)."""
    text = (REPO / "Dockerfile").read_text()
    assert re.fullmatch(
        r"docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}",
        global_args(text)["BASE"],
    )
    names: set[str] = set()
    for stage in stages:
        source, *alias = shlex.split(stage[0].args)
        assert source in {"${BASE}", "scratch"} | names, stage[0].args
        if alias:
            names.add(alias[-1])
    assert len(stages) >= 2, "builder + runtime stages"
    assert shlex.split(stages[-1][0].args) == ["${BASE}"]


def test_builder_installs_the_pinned_project_into_the_venv_the_image_ships(
    stages: list[list[Instruction]], final_stage: list[Instruction]
) -> None:
    runs = " ".join(i.args for stage in stages[:-1] for i in stage if i.keyword == "RUN")
    assert re.search(r"-m venv /opt/tagpin\b", runs)
    assert re.search(r"/opt/tagpin/bin/pip install (--[\w-]+ )*-c constraints\.txt \.(\s|$)", runs)
    copies = [copy_of(i) for i in final_stage if i.keyword == "COPY"]
    assert Copy(("--from=builder",), ("/opt/tagpin",), "/opt/tagpin") in copies
    # The generate command Argo CD runs is a console script pip puts in the venv's bin, which
    # must come first on the image's PATH.
    command = plugin_config()["spec"]["generate"]["command"][0]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command in scripts
    # ... which is then replaced by cmp.cli's LAUNCHER: the same main() without pip's `re`
    # (tests/e2e/test_render_server.py runs it).
    assert re.search(r"cmp\.cli\.write_launcher\(sys\.argv\[1\]\)'? /opt/tagpin/bin/tagpin\b", runs)
    assert image_env(final_stage)["PATH"].split(":")[0] == "/opt/tagpin/bin"


def test_every_subpackage_is_declared_so_the_image_ships_it() -> None:
    # Development installs are editable and import anything under cmp/; the image's regular
    # `pip install .` ships only the packages pyproject.toml declares.
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cmp").rglob("__init__.py")
    }
    if isinstance(declared, dict):  # [tool.setuptools.packages.find]
        patterns = declared["find"].get("include", ["*"])
        shipped = {name for name in found if any(fnmatch(name, pat) for pat in patterns)}
    else:
        shipped = found & set(declared)
    assert sorted(found - shipped) == []


def test_runtime_stage_installs_and_compiles_nothing(final_stage: list[Instruction]) -> None:
    # One RUN only, first: it removes the base's pip, setuptools and ensurepip. Nothing is
    # installed or compiled in the image that ships; the built image is checked by
    # tests/e2e/image/test_image.py.
    runs = [i for i in final_stage if i.keyword == "RUN"]
    assert len(runs) <= 1
    for run in runs:
        assert final_stage.index(run) <= 2, "the RUN comes before anything is copied in"
        assert "rm -rf" in run.args and "ensurepip" in run.args
        assert not re.search(r"install|apt|compileall|curl|wget|urllib", run.args), run.args
    declarative = {"FROM", "ARG", "LABEL", "COPY", "ENV", "USER", "WORKDIR", "ENTRYPOINT", "CMD"}
    assert {i.keyword for i in final_stage} <= declarative | {"RUN"}


def test_kustomize_is_the_version_the_tests_run_checksummed_per_architecture(
    stages: list[list[Instruction]], final_stage: list[Instruction]
) -> None:
    """The released image downloads kustomize's release for the architecture it is built for
    and checks it against Argo CD's recorded sha256 (a RUN with sha256sum: podman 4.3 refuses
    `ADD --checksum`); it is the kustomize the tests run (kubectl's embedded one)."""
    (stage,) = [s for s in stages if s[0].args.endswith(" AS kustomize")]
    args = stage_args(stage)
    assert args["KUSTOMIZE"] == "release" and "TARGETARCH" in args
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", args[f"KUSTOMIZE_SHA256_{arch}"]), arch
    (run,) = [i.args for i in stage if i.keyword == "RUN"]
    assert (
        "https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv"
        "${KUSTOMIZE_VERSION}/kustomize_v${KUSTOMIZE_VERSION}_linux_${TARGETARCH}.tar.gz"
    ) in run
    assert re.search(r'echo "\$sum  kustomize\.tar\.gz" \| sha256sum -c -', run)
    client = subprocess.run(
        [kubectl(), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Kustomize Version: v{args['KUSTOMIZE_VERSION']}" in client
    copies = [copy_of(i) for i in final_stage if i.keyword == "COPY"]
    assert Copy(("--from=kustomize",), ("/opt/kustomize/bin/",), "/usr/local/bin/") in copies


def test_image_user_is_the_sidecar_user(
    built: list[dict[str, Any]], final_stage: list[Instruction]
) -> None:
    security = container(pod_spec(built), SIDECAR)["securityContext"]
    user, _, group = only(final_stage, "USER").args.partition(":")
    assert (int(user), int(group)) == (security["runAsUser"], security["runAsGroup"]) == (999, 999)


def test_entrypoint_is_the_sidecar_command(
    built: list[dict[str, Any]], final_stage: list[Instruction]
) -> None:
    entrypoint = json.loads(only(final_stage, "ENTRYPOINT").args)
    assert entrypoint == container(pod_spec(built), SIDECAR)["command"]
    assert "CMD" not in {i.keyword for i in final_stage}


def test_plugin_config_is_baked_where_the_cmp_server_reads_it(
    built: list[dict[str, Any]], final_stage: list[Instruction]
) -> None:
    copies = [copy_of(i) for i in final_stage if i.keyword == "COPY"]
    assert Copy((), ("plugin.yaml",), str(PLUGIN_CONFIG_PATH)) in copies
    # A volume mounted at the config path or above it would hide the baked-in file.
    for mount_path in mounts(container(pod_spec(built), SIDECAR)):
        assert not PLUGIN_CONFIG_PATH.is_relative_to(mount_path), mount_path


def test_everything_the_image_writes_lands_on_the_sidecar_tmp(
    built: list[dict[str, Any]], final_stage: list[Instruction]
) -> None:
    spec = pod_spec(built)
    sidecar = container(spec, SIDECAR)
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [
        PurePosixPath(path)
        for path, name in mounts(sidecar).items()
        if "emptyDir" in volumes(spec)[name]
    ]
    env = image_env(final_stage)
    overridden = {e["name"] for e in sidecar["env"]}
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    places = {name: env[name] for name in ("HOME", "XDG_CACHE_HOME", "TAGPIN_CACHE_DIR")}
    places["WORKDIR"] = only(final_stage, "WORKDIR").args
    for name, path in places.items():
        assert name not in overridden, f"the sidecar overrides {name}"
        assert any(PurePosixPath(path).is_relative_to(w) for w in writable), (name, path)


def test_the_image_starts_a_render_server_on_the_sidecar_tmp(
    final_stage: list[Instruction], built: list[dict[str, Any]]
) -> None:
    """TAGPIN_RENDER_SERVER=auto in the image: its socket must land on the writable /tmp and
    fit in a Unix socket address, or every render would quietly run in-process."""
    env = image_env(final_stage)
    assert env["TAGPIN_RENDER_SERVER"] == "auto"
    path = socket_path(env)
    assert path is not None, "the default socket path does not fit in a Unix socket address"
    sidecar = container(pod_spec(built), SIDECAR)
    assert "TAGPIN_RENDER_SERVER" not in {e["name"] for e in sidecar["env"]}
    assert mounts(sidecar)["/tmp"] == "cmp-tmp" and PurePosixPath(path).is_relative_to("/tmp")


def test_image_carries_oci_labels(final_stage: list[Instruction]) -> None:
    labels: dict[str, str] = {}
    for instruction in final_stage:
        if instruction.keyword == "LABEL":
            labels.update(key_values(instruction.args))
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


def copied_sources(stages: list[list[Instruction]]) -> Iterator[str]:
    for stage in stages:
        for instruction in stage:
            if instruction.keyword == "COPY":
                copy = copy_of(instruction)
                if not any(flag.startswith("--from=") for flag in copy.flags):
                    yield from (source.rstrip("/") for source in copy.sources)


def test_every_copied_file_is_in_the_build_context(stages: list[list[Instruction]]) -> None:
    rules = dockerignore_rules((REPO / ".dockerignore").read_text())
    for source in copied_sources(stages):
        assert in_build_context(source, rules), f".dockerignore drops {source}"
        for path in (REPO / source).rglob("*.py"):
            assert in_build_context(str(path.relative_to(REPO)), rules), path


def test_every_copied_file_exists(stages: list[list[Instruction]]) -> None:
    # docker build fails on a missing COPY source; CI builds no image, so this is the check.
    missing = [source for source in copied_sources(stages) if not (REPO / source).exists()]
    assert missing == []


# --- example Applications ---------------------------------------------------------------------

# The parts of Argo CD v3.5.1's Application CRD (applications.argoproj.io openAPIV3Schema) the
# examples use, with every sibling property listed, so a misspelt field fails. kubernetes-validate
# ships only built-in kinds; the CRD's full schema is 200 KB, too much to vendor for two examples.
_STRINGS = {"type": "array", "items": {"type": "string"}}
APPLICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Application"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["destination", "project"],
            "additionalProperties": False,
            "properties": {
                "project": {"type": "string"},
                "destination": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("name", "namespace", "server")},
                },
                "source": {
                    "type": "object",
                    "required": ["repoURL"],
                    "additionalProperties": False,
                    "properties": {
                        **{
                            k: {"type": "string"}
                            for k in (
                                "chart",
                                "name",
                                "path",
                                "ref",
                                "repoURL",
                                "tagPrefix",
                                "targetRevision",
                            )
                        },
                        **{k: {"type": "object"} for k in ("directory", "helm", "kustomize")},
                        "plugin": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "env": {"type": "array"},
                                "parameters": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "name": {"type": "string"},
                                            "string": {"type": "string"},
                                            "array": _STRINGS,
                                            "map": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                "ignoreDifferences": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind"],
                        "additionalProperties": False,
                        "properties": {
                            **{
                                k: {"type": "string"}
                                for k in ("group", "kind", "name", "namespace")
                            },
                            **{
                                k: _STRINGS
                                for k in (
                                    "jqPathExpressions",
                                    "jsonPointers",
                                    "managedFieldsManagers",
                                )
                            },
                        },
                    },
                },
                "syncPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "automated": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                k: {"type": "boolean"}
                                for k in ("allowEmpty", "enabled", "prune", "selfHeal")
                            },
                        },
                        "managedNamespaceMetadata": {"type": "object"},
                        "retry": {"type": "object"},
                        "syncOptions": _STRINGS,
                    },
                },
                **{k: {} for k in ("info", "revisionHistoryLimit", "sourceHydrator", "sources")},
            },
        },
    },
}
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_a_valid_application(path: Path) -> None:
    for doc in read_yaml_docs(path):
        jsonschema.validate(doc, APPLICATION_SCHEMA)


def test_example_application_names_the_plugin_socket_and_its_parameters() -> None:
    (application,) = read_yaml_docs(DEPLOY / "examples" / "application.yaml")
    plugin = application["spec"]["source"]["plugin"]
    config = plugin_config()
    version = config["spec"].get("version")
    # The repo-server dials <plugin.name>.sock; the cmp-server listens on <name>[-<version>].sock.
    expected = config["metadata"]["name"] + (f"-{version}" if version else "")
    assert plugin["name"] == expected
    for parameter in plugin["parameters"]:
        announced = PARAMETERS_BY_NAME[parameter["name"]]
        kinds = set(parameter) - {"name"}
        assert kinds == {announced.collection_type}, parameter["name"]


def resolve_json_pointer(document: Any, pointer: str) -> Any:
    for token in pointer.split("/")[1:]:
        document = document[token.replace("~1", "/").replace("~0", "~")]
    return document


def test_app_of_apps_ignores_the_webhook_refresh_and_the_branch_deploy_annotations() -> None:
    from cmp.argocd.branch import RECORD_ANNOTATION
    from cmp.registry.pushes import PUSHES_ANNOTATION
    from cmp.webhook.records import REFRESH_ANNOTATION

    (parent,) = read_yaml_docs(DEPLOY / "examples" / "app-of-apps.yaml")
    (child,) = read_yaml_docs(DEPLOY / "examples" / "application.yaml")
    (rule,) = parent["spec"]["ignoreDifferences"]
    assert (rule["group"], rule["kind"]) == ("argoproj.io", "Application")
    refresh, pushes, record, *branch_deploy = rule["jsonPointers"]
    # What the webhook patches (the refresh and the push record) and tagpin branch's record,
    # `/` written `~1` (JSON Pointer): self-heal must not remove what a render relies on.
    assert refresh == "/metadata/annotations/" + REFRESH_ANNOTATION.replace("/", "~1")
    assert pushes == "/metadata/annotations/" + PUSHES_ANNOTATION.replace("/", "~1")
    assert record == "/metadata/annotations/" + RECORD_ANNOTATION.replace("/", "~1")
    assert branch_deploy
    for pointer in branch_deploy:
        assert pointer.endswith((".allow-tags", ".update-strategy"))
        assert isinstance(resolve_json_pointer(child, pointer), str), pointer
    # Without it a sync still writes the ignored field back.
    assert "RespectIgnoreDifferences=true" in parent["spec"]["syncPolicy"]["syncOptions"]
