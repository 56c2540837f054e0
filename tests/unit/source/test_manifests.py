"""The rendered stream must be Kubernetes objects: mappings with apiVersion, kind and a name,
each defined once. Failures name the file and line, exit with the documented code and print
nothing on stdout (Argo CD reads empty output as "delete everything")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmp.errors import ExitStatus, ManifestError
from cmp.source.manifests import Manifest, parse_rendered
from cmp.source.templates import RenderedFile
from tests.support.apptree import MINIMAL_APP, build_tree, cm, run_cli


def parse(*files: tuple[str, str], namespace: str = "") -> list[Manifest]:
    rendered = [RenderedFile(name=name, text=text) for name, text in files]
    return parse_rendered(rendered, default_namespace=namespace, max_nodes=10_000)


def problems_of(*files: tuple[str, str], namespace: str = "") -> tuple[str, ...]:
    with pytest.raises(ManifestError) as caught:
        parse(*files, namespace=namespace)
    return caught.value.problems


def test_manifest_properties() -> None:
    [deployment, service] = parse(
        (
            "templates/web.yaml",
            (
                "# leading comment\n---\napiVersion: apps/v1\nkind: Deployment\n"
                "metadata: {name: web, namespace: shop}\n---\napiVersion: v1\nkind: Service\n"
                "metadata: {name: web}\n"
            ),
        )
    )
    assert (deployment.group, deployment.kind, deployment.namespace, deployment.name) == (
        "apps",
        "Deployment",
        "shop",
        "web",
    )
    assert deployment.describe() == "Deployment/web in templates/web.yaml:3"
    assert (service.group, service.namespace, service.line) == ("", "", 7)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "- a\n- b\n",
            "templates/x.yaml:1: expected a Kubernetes object (a mapping), found a list",
        ),
        (
            "---\njust text\n",
            "templates/x.yaml:2: expected a Kubernetes object (a mapping), "
            "found the value 'just text'",
        ),
        (
            "kind: ConfigMap\nmetadata: {name: a}\n",
            "templates/x.yaml:1: ConfigMap lacks apiVersion",
        ),
        ("apiVersion: v1\nmetadata: {name: a}\n", "templates/x.yaml:1: object lacks kind"),
        ("apiVersion: v1\nkind: ConfigMap\n", "templates/x.yaml:1: ConfigMap lacks metadata"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {}}\n",
            "templates/x.yaml:1: ConfigMap lacks metadata.name",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ''}\n",
            "templates/x.yaml:1: ConfigMap lacks metadata.name",
        ),
        (
            "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "templates/x.yaml:1: ConfigMap apiVersion must be a string, found 1 (quote it)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n",
            "templates/x.yaml:1: ConfigMap metadata.name must be a string, found true (quote it)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 1.10}\n",
            "templates/x.yaml:1: ConfigMap metadata.name must be a string, found 1.1 (quote it)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {1: a, '1': b}\n",
            "templates/x.yaml:4:14: invalid YAML: keys 1 and '1' both mean '1' in Kubernetes; "
            "quote or rename one",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
            "data:\n  x: [{y: a, 'true': b}]\n",
            "templates/x.yaml:5:14: invalid YAML: keys true and 'true' both mean 'true'",
        ),
        ("a: 1\nb: [\n", "templates/x.yaml:3:1: invalid YAML"),
    ],
)
def test_invalid_objects_are_named_by_file_and_line(text: str, problem: str) -> None:
    [found] = problems_of(("templates/x.yaml", text))
    assert found.startswith(problem), found


def test_generate_name_stands_in_for_a_name() -> None:
    [job] = parse(
        (
            "templates/job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: migrate-}\n",
        )
    )
    assert job.kind == "Job" and job.name == ""


def test_empty_documents_are_skipped() -> None:
    manifests = parse(("templates/a.yaml", "---\n---\n# nothing\n---\n" + cm("a") + "---\n"))
    assert [(m.name, m.line) for m in manifests] == [("a", 5)]


def test_list_objects_are_flattened() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    )
    assert [m.name for m in parse(("templates/list.yaml", text))] == ["a", "b"]


def test_every_bad_document_in_every_file_is_reported() -> None:
    problems = problems_of(
        ("templates/a.yaml", "- 1\n---\nkind: X\nmetadata: {name: x}\n"),
        ("templates/b.yaml", "a: [\n"),
        ("templates/c.yaml", cm("fine")),
    )
    assert [p.split(": ")[0] for p in problems] == [
        "templates/a.yaml:1",
        "templates/a.yaml:3",
        "templates/b.yaml:2:1",
    ]


def test_duplicate_objects_name_both_files() -> None:
    problems = problems_of(
        ("templates/a.yaml", cm("web")), ("templates/b/c.yaml", "# first line\n---\n" + cm("web"))
    )
    assert problems == (
        "ConfigMap 'web' is defined twice: templates/a.yaml:1 and templates/b/c.yaml:3",
    )


def test_duplicate_detection_applies_the_destination_namespace() -> None:
    explicit = cm("web").replace("name: web", "name: web\n  namespace: shop")
    problems = problems_of(
        ("templates/a.yaml", explicit), ("templates/b.yaml", cm("web")), namespace="shop"
    )
    assert problems == (
        "ConfigMap 'web' in namespace shop is defined twice: templates/a.yaml:1 "
        "and templates/b.yaml:1",
    )


def test_group_kind_and_namespace_tell_objects_apart() -> None:
    def obj(api: str, kind: str, namespace: str = "") -> str:
        ns = f", namespace: {namespace}" if namespace else ""
        return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: web{ns}}}\n"

    text = (
        obj("apps/v1", "Deployment")
        + obj("extensions/v1beta1", "Deployment")
        + obj("v1", "Service")
        + obj("v1", "Service", "other")
    )
    assert len(parse(("templates/a.yaml", text), namespace="shop")) == 4
    with pytest.raises(ManifestError, match=r"^apps/Deployment 'web' in namespace shop is defined"):
        parse(("templates/a.yaml", text + obj("apps/v1beta2", "Deployment")), namespace="shop")


def test_empty_render_is_an_error() -> None:
    [problem] = problems_of(("templates/a.yaml", "# nothing yet\n"), ("templates/b.yaml.j2", ""))
    assert problem.startswith("the app rendered no Kubernetes objects")


# --- through the command line --------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "args", "status", "stderr"),
    [
        ({"templates/c.yaml": cm("c")}, [], ExitStatus.CONFIG, "tagpin.yaml: missing"),
        (
            {**MINIMAL_APP, "tagpin.yaml": "valuesFile: []\n"},
            [],
            ExitStatus.CONFIG,
            "tagpin.yaml: unknown key 'valuesFile'",
        ),
        (MINIMAL_APP, ["-f", "nope.yaml"], ExitStatus.SOURCE, "nope.yaml: values file not found"),
        ({**MINIMAL_APP, "values.yaml": "a: [\n"}, [], ExitStatus.SOURCE, "values.yaml:2:1:"),
        (
            {**MINIMAL_APP, "templates/t.yaml.j2": "\n{{ values.image.tag }}"},
            [],
            ExitStatus.TEMPLATE,
            "templates/t.yaml.j2:2: values.image is not defined",
        ),
        (
            {**MINIMAL_APP, "templates/t.yaml.j2": "{% if %}"},
            [],
            ExitStatus.TEMPLATE,
            "templates/t.yaml.j2:1: template syntax error",
        ),
        (
            {**MINIMAL_APP, "templates/t.yaml": "- 1\n"},
            [],
            ExitStatus.MANIFEST,
            "templates/t.yaml:1: expected a Kubernetes object",
        ),
        (
            {**MINIMAL_APP, "templates/t.yaml": cm("cm")},
            [],
            ExitStatus.MANIFEST,
            "ConfigMap 'cm' is defined twice: templates/cm.yaml:1 and templates/t.yaml:1",
        ),
        (
            {"tagpin.yaml": "{}\n", "templates/t.yaml": "# empty\n"},
            [],
            ExitStatus.MANIFEST,
            "the app rendered no Kubernetes objects",
        ),
        (
            MINIMAL_APP,
            ["--parameters-json", "[{"],
            ExitStatus.CONFIG,
            "--parameters-json is not valid JSON",
        ),
        (
            MINIMAL_APP,
            ["--parameters-json", '[{"name": "valuez", "map": {}}]'],
            ExitStatus.CONFIG,
            "unknown plugin parameter 'valuez' (tagpin knows: values-files, values, image-updater)",
        ),
        (
            MINIMAL_APP,
            ["--parameters-json", '[{"name": "values", "string": "a=b"}]'],
            ExitStatus.CONFIG,
            "plugin parameter 'values': must be given as map, not string",
        ),
        (
            MINIMAL_APP,
            ["--parameters-json", '[{"name": "values-files", "array": [1]}]'],
            ExitStatus.CONFIG,
            "plugin parameter 'values-files': must be an array of strings",
        ),
        (
            MINIMAL_APP,
            ["--parameters-json", '{"name": "values"}'],
            ExitStatus.CONFIG,
            "--parameters-json must be a JSON list of parameters",
        ),
    ],
)
def test_cli_failures_exit_with_their_code_and_print_nothing_on_stdout(
    tmp_path: Path, files: dict[str, str], args: list[str], status: ExitStatus, stderr: str
) -> None:
    app = build_tree(tmp_path / "app", files)
    done = run_cli(["render", str(app), "--repo-root", str(app), *args])
    assert done.stdout == b""
    assert done.returncode == status
    assert stderr in done.stderr.decode(), done.stderr.decode()


def test_cli_reports_every_problem_of_a_stage_in_one_run(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            **MINIMAL_APP,
            "templates/a.yaml.j2": "{{ values.a }}",
            "templates/b.yaml.j2": "\n{{ values.b }}",
            "templates/c.yaml.j2": "\n\n{% if %}",
        },
    )
    done = run_cli(["render", str(app), "--repo-root", str(app)])
    assert (done.returncode, done.stdout) == (ExitStatus.TEMPLATE, b"")
    assert done.stderr.decode().splitlines() == [
        "tagpin: template error (exit 5):",
        "  templates/a.yaml.j2:1: values.a is not defined",
        "  templates/b.yaml.j2:2: values.b is not defined",
        "  templates/c.yaml.j2:3: template syntax error: Expected an expression, "
        "got 'end of statement block'",
    ]


def test_generate_reads_bad_parameters_from_the_environment(tmp_path: Path) -> None:
    app = build_tree(tmp_path, MINIMAL_APP)
    done = run_cli(
        ["generate"],
        cwd=app,
        env={
            "ARGOCD_APP_NAME": "web",
            "ARGOCD_APP_PARAMETERS": json.dumps([{"name": "values", "map": {"a": 1}}]),
        },
    )
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, b"")
    assert "plugin parameter 'values': must be a map of strings to strings" in done.stderr.decode()


def test_cli_success_prints_the_stream_once(tmp_path: Path) -> None:
    app = build_tree(tmp_path, MINIMAL_APP)
    done = run_cli(["render", str(app), "--repo-root", str(app)])
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == b"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"


DEPLOYMENT_SELECTOR_TWICE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
  selector: {matchLabels: {app: web}}
"""


def test_a_selector_given_twice_alike_is_read_with_a_warning_naming_the_file() -> None:
    warnings: list[str] = []
    [deployment] = parse_rendered(
        [RenderedFile(name="templates/web.yaml", text=DEPLOYMENT_SELECTOR_TWICE)],
        default_namespace="",
        max_nodes=10_000,
        warnings=warnings,
    )
    assert deployment.body["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert [w.split(": key ")[0] for w in warnings] == ["templates/web.yaml:9:3"]


def test_a_duplicate_from_a_template_is_named_at_the_template_line(tmp_path: Path) -> None:
    from tests.support.apptree import render_dir

    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "templates/web.yaml.j2": (
                "{% for i in range(2) %}\n---\n"
                + DEPLOYMENT_SELECTOR_TWICE.replace("name: web}", "name: web-{{ i }}}")
                + "{% endfor %}\n"
            ),
        },
    )
    duplicates = [w for w in render_dir(app).warnings if "given twice" in w]
    # Rendered lines 10 and 20, both written by template line 11; the first key is 4 lines up
    # in the output as in the template.
    assert [(w.split(": key ")[0], w.rsplit(" (", 1)[1]) for w in duplicates] == [
        ("templates/web.yaml.j2:11", "rendered line 10, column 3)"),
        ("templates/web.yaml.j2:11", "rendered line 20, column 3)"),
    ]
    assert all("(the first one 4 lines above)" in w for w in duplicates)
