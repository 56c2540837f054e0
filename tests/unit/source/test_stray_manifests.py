"""A Kubernetes object next to templates/ is not deployed, and tagpin says so.

Only files under templates/ are rendered. A Service written as `apps/web/service.yaml` (or
under `apps/web/manifests/`) would otherwise be left out of the app with exit 0: the render
warns, naming the file and where to move it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.apptree import MINIMAL_APP, build_tree, cm, render_dir

SERVICE = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"


def warning(name: str) -> str:
    return (
        f"{name}: not rendered: it holds a Kubernetes object, and a tagpin app renders only the "
        "files under templates/; move it there to deploy it"
    )


def test_an_object_beside_templates_is_named_and_not_deployed(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path / "web",
        {**MINIMAL_APP, "service.yaml": SERVICE, "manifests/ingress.yml": SERVICE},
    )
    result = render_dir(app)
    assert "kind: Service" not in result.text
    assert result.warnings == [warning("service.yaml"), warning("manifests/ingress.yml")]


def test_values_docs_and_other_apps_are_not_objects(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path / "web",
        {
            **MINIMAL_APP,
            "values.yaml": "kind: web\nreplicas: 2\n",  # no apiVersion: values, not an object
            "values-prod.yaml": "image: {tag: v1}\n",
            "README.md": SERVICE,
            ".github/service.yaml": SERVICE,
            "nested/tagpin.yaml": "{}\n",  # another app, rendered by its own Application
            "nested/templates/svc.yaml": SERVICE,
            "nested/svc.yaml": SERVICE,
            "templates/sub/svc.yaml": SERVICE,
        },
    )
    assert render_dir(app).warnings == []


def test_a_file_linked_from_outside_the_repository_is_not_read(tmp_path: Path) -> None:
    outside = build_tree(tmp_path / "outside", {"secret.yaml": SERVICE})
    app = build_tree(tmp_path / "repo" / "web", MINIMAL_APP)
    os.symlink(outside / "secret.yaml", app / "linked.yaml")
    assert render_dir(app, tmp_path / "repo").warnings == []


def test_a_configmap_in_templates_renders_without_a_warning(tmp_path: Path) -> None:
    app = build_tree(tmp_path / "web", {"tagpin.yaml": "{}\n", "templates/a.yaml": cm("a")})
    result = render_dir(app)
    assert "name: a" in result.text and result.warnings == []


def test_a_fifo_or_directory_named_like_yaml_neither_hangs_nor_warns(tmp_path: Path) -> None:
    app = build_tree(tmp_path / "web", MINIMAL_APP)
    os.mkfifo(app / "service.yaml")  # opened for reading it would wait for a writer forever
    (app / "dir.yaml").mkdir()
    assert render_dir(app).warnings == []


def test_at_most_a_bounded_number_of_files_is_looked_into(tmp_path: Path) -> None:
    from cmp.source.appdir import STRAY_MAX_FILES

    strays = {f"svc-{n:04d}.yaml": SERVICE for n in range(STRAY_MAX_FILES + 10)}
    app = build_tree(tmp_path / "web", {**MINIMAL_APP, **strays})
    warnings = render_dir(app).warnings
    assert warnings == [warning(name) for name in sorted(strays)[:STRAY_MAX_FILES]]
