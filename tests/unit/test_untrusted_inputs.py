"""Every parser of data from outside tagpin, fed random nesting, sizes and types (issue 22):
each answers with a result or its named error, never another exception (a RecursionError, an
OverflowError, a TypeError: exit 70 in a command, HTTP 500 in the webhook).

The generators build text, not values, so they reach depths no Python value could be printed
at (5,000 levels), and mix in what each format's readers disagree on: NaN, Infinity, numbers
beyond a float, lone surrogates, duplicate keys, anchors that refer to themselves, tags.
A named test per attack of the issue comes first; the properties after them cover the class.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmp.argocd.branch import LiveApp, plan_clear, status_rows
from cmp.argocd.kube import LookupSettings, fetch_annotations
from cmp.errors import AppLookupError, ConfigError, ResolveError, SourceError, TagpinError
from cmp.imageupdater.annotations import PREFIX
from cmp.imageupdater.plan import policies_from
from cmp.jsonread import MAX_NESTING, JsonError, load_list, loads
from cmp.output import Output
from cmp.pipeline import run
from cmp.registry.base import TagInfo
from cmp.registry.names import EcrRepository, ecr_registry
from cmp.registry.pushes import PUSHES_ANNOTATION, BadRecord, PushFloors, parse_record
from cmp.request import AppInfo, KubeInfo, ManifestStream, RenderRequest, StreamInput
from cmp.settings import AppLookup, Settings, parse_parameters
from cmp.source.emit import emit_stream, emit_value
from cmp.source.stream import json_documents, read_stream
from cmp.source.yamlread import load_all
from cmp.webhook.events import (
    Ignored,
    PushEvent,
    Rejected,
    parse_eventbridge,
    parse_generic,
    parse_json_object,
)
from cmp.webhook.matching import select
from cmp.webhook.records import refresh_patch
from tests.support.static_registry import StaticRegistry

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
WEB = f"{HOST}/shop/web"
DIGEST = "sha256:" + "1" * 64
MAX_NODES = 200_000
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def depth_of(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (iterative: it may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth)
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return deepest


def deep(depth: int, inner: str = "1", opener: str = '{"a":') -> str:
    closer = "]" if opener == "[" else "}"
    return opener * depth + inner + closer * depth


# --- the attacks, one test each -------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        f'{{"v":1,"pushes":{{"{WEB}":{{"tag":"main","digest":null,"at":{"1" * 401}}}}}}}',
        f'{{"v":1,"pushes":{{}},"older":{"9" * 5000}}}',
        deep(5000),
        deep(300, opener="["),
        '{"v":1,"pushes":{},"older":NaN}',
        '{"v":1,"pushes":{},"older":1e400}',
    ],
    ids=["401-digit-time", "5000-digit-older", "5000-deep", "300-deep", "NaN", "1e400"],
)
def test_a_tenants_own_unreadable_push_record_only_warns(record: str) -> None:
    """The attack: `tagpin.dev/pushes` with a 401-digit time or deeply nested JSON was exit 70
    for the app; the docs say an unreadable record only warns (and the render asks ECR)."""
    floors = PushFloors()
    [warning] = floors.announce_annotations({PUSHES_ANNOTATION: record})
    assert f"{PUSHES_ANNOTATION} on the Application is unreadable" in warning
    repository = EcrRepository(ecr_registry(HOST), "shop/web")  # type: ignore[arg-type]
    assert not floors.admits(repository, fetched_at=time.time() - 60, seen=None)
    # The webhook's next patch replaces it with a record it can read.
    application = {"metadata": {"annotations": {PUSHES_ANNOTATION: record}}}
    event = PushEvent(WEB, "main", None, "generic", "x")
    patch = refresh_patch(application, [event], now=1.0e9)
    assert parse_record(patch["metadata"]["annotations"][PUSHES_ANNOTATION]).pushes[WEB].tag


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"kind": "ConfigMap", "data": {"x": NaN}}', "1: invalid JSON: data.x: NaN is not JSON"),
        ('{"data": {"list": [0, Infinity]}}', "1: invalid JSON: data.list[1]: Infinity is not"),
        ('{}\n{"spec": {"replicas": 1e400}}', "2: invalid JSON: spec.replicas: the number 1e400"),
        ('{"spec": {"n": %s}}' % ("1" * 401), "1: invalid JSON: spec.n: the number 111"),
        ('{"data": {"x": "\\ud800"}}', "1: invalid JSON: data.x: a lone UTF-16 surrogate"),
        ('{"data": {"a.b": -NaN}}', "1: invalid JSON: Expecting value"),
        (deep(1000, opener="["), "1: invalid JSON: nested too deeply (more than 256 levels)"),
        ("\n" + deep(100_000), "2: invalid JSON: nested too deeply (more than 256 levels)"),
    ],
)
def test_json_argo_cd_cannot_apply_or_python_cannot_nest_is_refused_with_its_place(
    text: str, problem: str
) -> None:
    """The attack: JSON nested 1,000 levels was exit 70 in `tagpin pin` and the Helm
    post-renderer; `NaN`, `Infinity` and `1e400` came out as `.nan`/`.inf` with exit 0."""
    with pytest.raises(TagpinError) as refused:
        read_stream(
            ManifestStream((StreamInput("<stdin>", text),)),
            default_namespace="",
            max_nodes=MAX_NODES,
            output=Output(),
        )
    assert str(refused.value) == f"<stdin>:{problem}" or str(refused.value).startswith(
        f"<stdin>:{problem}"
    )


class CountingText(str):
    """A text that counts the characters its `count` calls look at."""

    looked_at = 0

    def count(self, sub: str, start: Any = None, end: Any = None) -> int:
        first = 0 if start is None else start
        CountingText.looked_at += (len(self) if end is None else end) - first
        return super().count(sub, start, end)


def test_line_numbers_of_a_json_stream_look_at_each_character_a_bounded_number_of_times() -> None:
    """The attack: 300,000 `{}` in a row (1 MiB) took 94 s in `tagpin pin`: each value's line
    number was counted from the start of the stream again (quadratic)."""
    text = CountingText("{}\n" * 3000)
    CountingText.looked_at = 0
    documents = json_documents(text, "<stdin>", MAX_NODES)
    assert [line for line, _ in documents] == list(range(1, 3001))
    assert CountingText.looked_at <= 4 * len(text)  # the depth scan's counts, then one pass


def test_a_stream_with_no_objects_is_nothing_to_pin() -> None:
    """Issue 23, item 20: `tagpin pin` given no objects prints none (exit 0)."""
    for text in ("", "---\n", "null\n", "# only a comment\n", "---\n---\n"):
        said = Output()
        stream = ManifestStream((StreamInput("-", text),))
        assert read_stream(stream, default_namespace="", max_nodes=9, output=said) == []
        assert said.notes == ["the input holds no Kubernetes objects; printed none"]


def test_one_too_deep_item_is_left_out_of_a_list_and_named() -> None:
    good = {"metadata": {"name": "good", "namespace": "argocd"}}
    bad = '{"metadata":{"name":"evil","namespace":"argocd"},"spec":' + deep(1500) + "}"
    text = (
        '{"kind":"ApplicationList","metadata":{"continue":""},"other":[[],' + bad + "],"
        f'"items":[7,null,"{{[",{json.dumps(good)},{bad},{json.dumps(good)}]}}'
    )
    document, [skipped] = load_list(text.replace('"other":[[],' + bad + "],", ""))
    assert document["items"] == [7, None, "{[", good, good]
    assert skipped.describe("argocd") == "argocd/evil" and skipped.position == 4
    with pytest.raises(JsonError, match="nested too deeply"):  # only `items` are left out
        load_list(text)
    assert skipped.problem == f"nested too deeply (more than {MAX_NESTING} levels)"


# --- generators -----------------------------------------------------------------------------

DEPTHS = st.sampled_from([2, 50, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 1000, 5000])
KEYS = st.one_of(
    st.sampled_from(
        ["a", "apiVersion", "kind", "metadata", "name", "namespace", "items", "spec", "image"]
        + ["annotations", "v", "pushes", "tag", "digest", "at", "older", "previous", "by"]
        + ["source", "detail", "containers", "template", "status", "summary", "images"]
    ),
    st.text(max_size=6),
)
NASTY_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 401, "9" * 5000]
NASTY_NUMBERS += ["1e-400", "-0", "0.1e1", "1E+2", "2e308", "17976931348623157e292"]
NASTY_STRINGS = ['"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', '"[[{{"']
NASTY_STRINGS += [json.dumps(f"{WEB}:v1"), json.dumps(f"{WEB}@{DIGEST}"), '"x' + "y" * 70_000 + '"']
JSON_SCALARS = st.one_of(
    st.sampled_from(["null", "true", "false", *NASTY_NUMBERS, *NASTY_STRINGS]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.text(max_size=12).map(json.dumps),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


def _json_containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=4).map(_array),
        st.lists(st.tuples(KEYS, children), max_size=4).map(_object),
        st.builds(deep, DEPTHS, children, st.sampled_from(["[", '{"a":', '{"spec":'])),
    )


JSON_TEXT = st.recursive(JSON_SCALARS, _json_containers, max_leaves=12)


@st.composite
def broken(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """A text cut short and/or with a piece of syntax spliced in."""
    text = draw(texts)
    cut = draw(st.integers(0, len(text)))
    splice = draw(st.sampled_from(["", "]", "}", ",", '"', ":", "[" * 3000, "\\", "\x00"]))
    return text[:cut] + splice + text[cut:] if draw(st.booleans()) else text[:cut] + splice


ANY_JSON = st.one_of(JSON_TEXT, broken(JSON_TEXT))


@st.composite
def kubernetes_objects(draw: st.DrawFn) -> str:
    """JSON text of a Kubernetes-looking object whose every part may be anything."""
    image = draw(st.one_of(st.sampled_from(NASTY_STRINGS), JSON_TEXT))
    fields = {
        "apiVersion": draw(st.one_of(st.just('"apps/v1"'), JSON_TEXT)),
        "kind": draw(st.one_of(st.just('"Deployment"'), st.just('"List"'), JSON_TEXT)),
        "metadata": draw(st.one_of(st.just('{"name":"web"}'), JSON_TEXT)),
        "spec": _object(
            [
                (
                    "template",
                    _object(
                        [
                            (
                                "spec",
                                _object(
                                    [
                                        (
                                            "containers",
                                            _array(
                                                [_object([("name", '"web"'), ("image", image)])]
                                            ),
                                        )
                                    ]
                                ),
                            )
                        ]
                    ),
                )
            ]
        ),
        "items": draw(st.one_of(st.just("[]"), JSON_TEXT)),
        "x": draw(JSON_TEXT),
    }
    keep = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return _object([(key, fields[key]) for key in keep])


YAML_PIECES = [
    "a: &x [1, *x]",
    "a: &a {b: *a}",
    'l1: &l1 ["x","x","x","x","x","x","x","x","x"]\nl2: &l2 [*l1,*l1,*l1,*l1,*l1,*l1]\n'
    "l3: [*l2,*l2,*l2,*l2,*l2,*l2,*l2,*l2]",
    "x: .nan",
    "x: .inf",
    "x: !!float 1e400",
    "x: 1" + "0" * 400,
    "<<: {a: 1}",
    "<<: [*nothing]",
    "a: 1\na: 2",
    "1: a\n'1': b",
    "x: !!binary aGVsbG8=",
    "x: !!timestamp 2001-12-14",
    "x: !foo bar",
    "x: !!map text",
    "x: ! 12",
    "x:\n" + "".join("  " * i + "- \n" for i in range(1, 300)) + "  " * 300 + "- a",
    "x: " + "[" * 300 + "]" * 300,
    "x: " + "{a: " * 300 + "1" + "}" * 300,
    "\t a: 1",
    "x: \x07",
    "x: '\ud800'",
    'x: "\\ud800"',
    "%YAML 1.1\n---\na: 1",
    "? [a, b]\n: c",
    "image: " + WEB + ":v1",
]


@st.composite
def yaml_streams(draw: st.DrawFn) -> str:
    """A YAML stream: Kubernetes-looking documents, YAML's own hazards, JSON (flow YAML)."""
    documents = []
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.one_of(st.sampled_from(YAML_PIECES), JSON_TEXT, kubernetes_objects()))
        header = draw(
            st.sampled_from(["", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"])
        )
        documents.append(header + body + "\n")
    return "---\n".join(documents)


ANY_YAML = st.one_of(yaml_streams(), broken(yaml_streams()))


# --- the properties -------------------------------------------------------------------------


@PROPERTY
@given(ANY_JSON)
def test_json_from_outside_is_a_bounded_value_or_a_json_error(text: str) -> None:
    try:
        value = loads(text)
    except JsonError:
        return
    assert depth_of(value) <= MAX_NESTING
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")  # Argo CD can carry it


@PROPERTY
@given(st.lists(st.one_of(ANY_JSON, kubernetes_objects()), max_size=4))
def test_a_kubernetes_list_keeps_every_readable_item(items: list[str]) -> None:
    text = '{"kind":"ApplicationList","metadata":{},"items":[' + ",".join(items) + "]}"
    try:
        document, skipped = load_list(text)
    except JsonError:
        return
    assert all(depth_of(item) <= MAX_NESTING for item in document["items"])
    depths = [_depth(item) for item in items]
    if all(depth is not None for depth in depths):  # each item one JSON value: none is lost
        kept = [loads(t) for t, d in zip(items, depths, strict=True) if d <= MAX_NESTING]  # type: ignore[operator]
        assert document["items"] == kept
        assert len(skipped) == len(items) - len(kept)


def _depth(text: str) -> int | None:
    """How deeply one JSON value nests, read without the bound; None if it is not one."""
    try:
        return depth_of(loads(text, max_depth=100_000)) if text.strip() else None
    except (JsonError, RecursionError):
        return None


@PROPERTY
@given(st.one_of(ANY_JSON, ANY_YAML, st.lists(kubernetes_objects(), max_size=3).map("\n".join)))
def test_pin_gives_canonical_yaml_or_a_named_error(text: str) -> None:
    """The whole of `tagpin pin` after reading: check, find images, pin from a lock, emit."""
    with tempfile.TemporaryDirectory() as directory:
        lock = Path(directory) / "tagpin.lock"
        lock.write_text(
            "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
            f"- image: {WEB}:v1\n  digest: {DIGEST}\n"
        )
        environ = {"TAGPIN_APP_LOOKUP": "off", "TAGPIN_CACHE_DIR": directory}
        request = RenderRequest(
            app_dir=Path(directory),
            repo_root=Path(directory),
            app=AppInfo(),
            kube=KubeInfo(),
            env={},
            parameters=parse_parameters(None),
            settings_env=environ,
            settings=Settings.from_environ(environ),
            digests=lock,
            stream=ManifestStream((StreamInput("<stdin>", text),)),
        )
        try:
            result = run(request)
        except TagpinError:
            return
    for line, document in load_all(result.text, "out", max_nodes=10 * MAX_NODES):
        assert isinstance(document, dict), line


@PROPERTY
@given(ANY_YAML)
def test_yaml_from_a_tenant_is_bounded_values_or_a_source_error(text: str) -> None:
    """Values files, tagpin.yaml and rendered templates all go through this reader."""
    try:
        documents = load_all(text, "values.yaml", max_nodes=MAX_NODES)
    except SourceError:
        return
    for _, document in documents:
        assert depth_of(document) <= MAX_NESTING
        emit_value(document)  # to_yaml, and the emitter every render ends with
        emit_stream([document])
        json.dumps(document, ensure_ascii=False)  # to_json


@PROPERTY
@given(st.one_of(ANY_JSON, st.builds(json.dumps, st.dictionaries(KEYS, st.text(max_size=3)))))
def test_push_records_are_read_or_only_warned_about(text: str) -> None:
    with contextlib.suppress(BadRecord):
        parse_record(text)
    assert isinstance(PushFloors().announce_annotations({PUSHES_ANNOTATION: text}), list)
    patch = refresh_patch(
        {"metadata": {"annotations": {PUSHES_ANNOTATION: text}}},
        [PushEvent(WEB, "v1", None, "generic", "k")],
        now=1.7e9,
    )
    parse_record(patch["metadata"]["annotations"][PUSHES_ANNOTATION])


def _registry() -> StaticRegistry:
    repository = EcrRepository(ecr_registry(HOST), "shop/web")  # type: ignore[arg-type]
    return StaticRegistry({repository: {"v1": TagInfo("v1", DIGEST)}})


ANNOTATION_VALUES = st.one_of(
    st.sampled_from(
        [f"web={WEB}", f"web={WEB}, api={HOST}/shop/api", "regexp:^pr-", "regexp:(a+)+$"]
        + ["semver", "alphabetical", "newest-build", "digest", "any", "regexp:" + "(" * 2000]
        + ["glob:*", f"{WEB}:~1.2", "a=b=c", ",,,", "web=nginx", "web=" + "x" * 5000]
    ),
    st.text(max_size=20),
)
UPDATER_KEYS = st.one_of(
    st.sampled_from(
        ["image-list", "web.allow-tags", "web.update-strategy", "web.ignore-tags", "allow-tags"]
        + ["web.platforms", "api.allow-tags", "web.helm.image-tag", "web.force-update"]
    ),
    st.text(max_size=12),
)


@st.composite
def applications(draw: st.DrawFn) -> dict[str, Any]:
    """An Application as it could come out of a list, every part possibly of the wrong type."""
    annotations = {
        PREFIX + key: value
        for key, value in draw(st.dictionaries(UPDATER_KEYS, ANNOTATION_VALUES, max_size=5)).items()
    }
    records = draw(st.one_of(ANY_JSON, st.just('{"web":{"previous":{"allow-tags":5}}}')))
    annotations["tagpin.dev/branch-deploy"] = records
    annotations[PUSHES_ANNOTATION] = draw(ANY_JSON)
    value = st.one_of(JSON_TEXT.map(_json_or_text))
    parameter = draw(st.dictionaries(UPDATER_KEYS, ANNOTATION_VALUES, max_size=3))
    spec = draw(
        st.sampled_from(
            [
                {
                    "source": {
                        "plugin": {"parameters": [{"name": "image-updater", "map": parameter}]}
                    }
                },
                {"sources": [None, {"plugin": []}, {"plugin": {"parameters": "x"}}]},
                {"source": [1]},
            ]
        )
        | value
    )
    return {
        "metadata": draw(
            st.sampled_from(
                [
                    {"name": "web", "namespace": "argocd", "annotations": annotations},
                    {"name": "web", "namespace": "argocd", "annotations": ["a"]},
                ]
            )
            | value
        ),
        "spec": spec,
        "status": draw(st.just({"summary": {"images": [f"{WEB}:v1", 7]}}) | value),
    }


def _json_or_text(text: str) -> Any:
    try:
        return loads(text)
    except JsonError:
        return text


@PROPERTY
@given(applications())
def test_branch_deploys_of_any_application_read_or_fail_by_name(application: Any) -> None:
    app = LiveApp.from_object(application)
    rows = status_rows(app, _registry)
    assert rows == [] or {row["app"] for row in rows} == {f"{app.namespace}/{app.name}"}
    with contextlib.suppress(ConfigError, ResolveError):
        plan_clear(app, _registry(), alias=None, only_if=None)


class OneApplication:
    """An ApplicationReader that answers with one given object."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def get_application(self, namespace: str, name: str) -> Any:
        return self.application


@PROPERTY
@given(
    st.one_of(applications(), JSON_TEXT.map(_json_or_text).filter(lambda v: isinstance(v, dict)))
)
def test_a_render_reads_the_annotations_of_any_application_or_fails_by_name(
    application: dict[str, Any],
) -> None:
    settings = LookupSettings(mode=AppLookup.ON, enabled=True, app_name="web", namespace="argocd")
    with contextlib.suppress(AppLookupError):
        annotations, _ = fetch_annotations(settings, lambda: OneApplication(application))
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        PushFloors().announce_annotations(annotations)


@PROPERTY
@given(
    st.dictionaries(UPDATER_KEYS, ANNOTATION_VALUES, max_size=6),
    st.dictionaries(UPDATER_KEYS, ANNOTATION_VALUES, max_size=3),
    st.text(max_size=60),
)
def test_image_updater_annotations_give_policies_or_a_config_error(
    annotations: dict[str, str], parameter: dict[str, str], tag: str
) -> None:
    try:
        policies = policies_from({PREFIX + k: v for k, v in annotations.items()}, parameter)
    except ConfigError:
        return
    for policy in policies:
        policy.allows(tag)
        policy.matches_repository(WEB)
        policy.describe()


@PROPERTY
@given(st.lists(applications(), max_size=3), st.sampled_from([WEB, f"{HOST}/x", "nginx"]))
def test_the_webhook_matches_any_applications_without_failing(
    listed: list[Any], repository: str
) -> None:
    reported: list[str] = []
    select(listed, repository, "v1", lambda app, error: reported.append(app))


EVENT_FIELDS: dict[str, Callable[[], st.SearchStrategy[str]]] = {
    "source": lambda: st.just('"aws.ecr"'),
    "detail-type": lambda: st.just('"ECR Image Action"'),
    "id": lambda: st.just('"e1"'),
    "time": lambda: st.sampled_from(['"2026-01-01T00:00:00Z"', '"x"', '"2026-01-01T00:00:00"']),
    "account": lambda: st.sampled_from(['"123456789012"', '"1"', "123456789012"]),
    "region": lambda: st.sampled_from(['"eu-west-1"', '"mars"']),
}


@st.composite
def eventbridge_bodies(draw: st.DrawFn) -> bytes:
    fields = [(key, draw(make() | JSON_TEXT)) for key, make in EVENT_FIELDS.items()]
    detail = _object(
        [
            ("action-type", draw(st.sampled_from(['"PUSH"', '"DELETE"']) | JSON_TEXT)),
            ("result", draw(st.just('"SUCCESS"') | JSON_TEXT)),
            ("repository-name", draw(st.just('"shop/web"') | JSON_TEXT)),
            ("image-tag", draw(st.just('"v1"') | JSON_TEXT)),
            ("image-digest", draw(st.just(json.dumps(DIGEST)) | JSON_TEXT)),
        ]
    )
    fields.append(("detail", draw(st.just(detail) | JSON_TEXT)))
    return draw(st.just(_object(fields)) | ANY_JSON).encode("utf-8", "surrogatepass")


@PROPERTY
@given(st.one_of(eventbridge_bodies(), st.binary(max_size=40)))
def test_webhook_bodies_become_an_event_or_a_4xx(body: bytes) -> None:
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    try:
        document = parse_json_object(body)
        parse_eventbridge(document, now, 300)
    except (Rejected, Ignored):
        pass
    with contextlib.suppress(Rejected):
        parse_generic(parse_json_object(body), "signature")


@PROPERTY
@given(st.one_of(ANY_JSON, st.lists(JSON_TEXT, max_size=3).map(_array)))
def test_plugin_parameters_are_read_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_parameters(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_JSON, ANY_YAML)
def test_a_values_schema_checks_values_or_says_why_not(schema: str, values: str) -> None:
    from cmp.source.appdir import Limits, RepoFiles
    from cmp.source.schema import check_values

    try:
        loaded = load_all(values, "values.yaml", max_nodes=MAX_NODES)
    except SourceError:
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "values.schema.json"
        path.write_text(schema, encoding="utf-8", errors="surrogatepass")
        files = RepoFiles(Path(directory), Path(directory), Limits())
        for _, document in loaded:
            with contextlib.suppress(ConfigError, SourceError):
                check_values(files, path, [("values.yaml", document)], {}, document)


def test_the_generators_reach_every_depth_and_hazard() -> None:
    """The properties above only mean something if the texts get deep and nasty: check that the
    bound is crossed both ways and that the hazards appear (derandomized: the same 300 texts each
    run, so this checks the generators, not luck)."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(ANY_JSON)
    def sample(text: str) -> None:
        try:
            loads(text)
            seen.add("read")
        except JsonError as error:
            for word in ("nested too deeply", "NaN", "out of range", "surrogate", "duplicate"):
                if word in error.message:
                    seen.add(word)

    sample()
    assert {"read", "nested too deeply", "NaN", "out of range"} <= seen, seen
