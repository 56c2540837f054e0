"""The YAML loader reads what kubectl reads; the emitter writes one canonical byte stream."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmp.errors import SourceError
from cmp.request import AppInfo
from cmp.source.emit import emit_stream, emit_value
from cmp.source.yamlread import load_all, load_one
from tests.support.apptree import build_tree, cm, render_text, run_cli

LIMIT = 100_000


def load(text: str) -> Any:
    return load_one(text, "apps/web/values.yaml", max_nodes=LIMIT)


# --- loader: go-yaml v2 scalar rules -------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("12:30", "12:30"),  # PyYAML: sexagesimal 750
        ("1:20:30", "1:20:30"),
        ("2024-01-01", "2024-01-01"),  # PyYAML: datetime.date
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("=", "="),  # PyYAML: an error
        ("y", True),  # PyYAML: the string "y"
        ("Y", True),
        ("n", False),
        ("yes", True),
        ("NO", False),
        ("on", True),
        ("OFF", False),
        ("1e3", 1000.0),  # PyYAML: the string "1e3"
        ("1e+3", 1000.0),
        ("1.10", 1.1),
        ("0o17", 15),  # PyYAML: the string "0o17"
        ("017", 15),
        ("0x1F", 31),
        ("0b101", 5),
        ("1_000", 1000),
        ("+12", 12),
        ("-0", 0),
        ("08", 8.0),  # not octal, so go-yaml falls through to a float
        ("~", None),
        ("null", None),
        ("", None),
        (".inf", math.inf),
        ("-.inf", -math.inf),
        ("plain words", "plain words"),
        ("v1.4.2", "v1.4.2"),
        # go-yaml v2 deletes every `_` first and lets `0b` carry a sign (issue 19)
        ("+_1", 1),
        ("1e_3", 1000.0),
        ("0b-1", -1),
        ("0x_1F", 31),
        # strconv.ParseFloat reads `.`-first text: `_` only between digits
        ("._5", "._5"),
        (".5_", ".5_"),
        (".0_5", 0.05),
        # beyond 64 bits / float range, as go-yaml reads them
        ("0x1ffffffffffffffff", "0x1ffffffffffffffff"),
        ("99999999999999999999", 1e20),
        ("18446744073709551615", 2**64 - 1),
        ("1.5e400", "1.5e400"),
        ("2024-1-1T1:2:3Z", "2024-1-1T1:2:3Z"),
    ],
)
def test_plain_scalars_resolve_like_kubernetes(scalar: str, expected: Any) -> None:
    value = load(f"key: {scalar}\n")["key"]
    assert value == expected
    assert type(value) is type(expected)


def test_nan_is_a_float() -> None:
    assert math.isnan(load("key: .nan\n")["key"])


def test_explicit_str_tag_and_quotes_keep_strings() -> None:
    assert load("a: !!str 12\nb: '0755'\nc: \"yes\"\n") == {"a": "12", "b": "0755", "c": "yes"}


def test_duplicate_key_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(SourceError) as caught:
        load("image: a\nreplicas: 2\nimage: b\n")
    assert str(caught.value).startswith("apps/web/values.yaml:3:")
    assert "duplicate key 'image'" in str(caught.value)


def test_duplicate_key_in_a_nested_mapping_names_its_line() -> None:
    with pytest.raises(SourceError, match=r"values\.yaml:4:.*duplicate key 'tag'"):
        load("image:\n  repository: r\n  tag: a\n  tag: b\n")


SELECTOR_TWICE = (
    "spec:\n"
    "  selector: {matchLabels: {app: web}}\n"
    "  replicas: 2\n"
    "  selector:\n"
    "    matchLabels:\n"
    "      app: web\n"
)


def test_a_key_given_twice_with_the_same_value_is_a_warning_when_the_caller_takes_them() -> None:
    warnings: list[str] = []
    [(_, document)] = load_all(SELECTOR_TWICE, "d.yaml", max_nodes=LIMIT, warnings=warnings)
    assert document == {"spec": {"selector": {"matchLabels": {"app": "web"}}, "replicas": 2}}
    assert warnings == [
        "d.yaml:4:3: key 'selector' is given twice in one mapping (the first one 2 lines above) "
        "with the same value; Argo CD keeps the last one, so nothing changes, but delete one of "
        "them"
    ]


@pytest.mark.parametrize(
    "second",
    [
        "    matchLabels:\n      app: api\n",  # a different value
        "    matchLabels:\n      app: web\n      tier: front\n",  # one key more
        "    matchLabels: {app: web}\n    x: 1\n",
    ],
)
def test_a_key_given_twice_with_different_values_stays_an_error(second: str) -> None:
    text = "spec:\n  selector: {matchLabels: {app: web}}\n  selector:\n" + second
    with pytest.raises(SourceError) as caught:
        load_all(text, "d.yaml", max_nodes=LIMIT, warnings=[])
    assert str(caught.value) == (
        "d.yaml:3:3: invalid YAML: duplicate key 'selector' in a mapping (the first one 1 line "
        "above) with a different value; Argo CD would apply only the last one: delete the one you "
        "do not mean"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [("1", "1.0"), ("1", "true"), ("'1'", "1"), ("[1]", "[1, 1]"), ("{}", "[]"), ("~", "''")],
)
def test_equal_means_the_same_value_and_type(first: str, second: str) -> None:
    with pytest.raises(SourceError, match="with a different value"):
        load_all(f"a: {first}\na: {second}\n", "d.yaml", max_nodes=LIMIT, warnings=[])


def test_equal_values_through_aliases_and_merges_are_compared_as_read() -> None:
    text = "base: &b {x: [1, {z: 2}]}\nk: *b\nk:\n  <<: {x: [1, {z: 2}]}\n"
    warnings: list[str] = []
    [(_, document)] = load_all(text, "d.yaml", max_nodes=LIMIT, warnings=warnings)
    assert document["k"] == {"x": [1, {"z": 2}]}
    assert len(warnings) == 1 and "key 'k' is given twice" in warnings[0]


def test_without_a_place_for_warnings_even_equal_duplicates_are_refused() -> None:
    # tagpin.yaml, locks and kustomizations are read this way: strict.
    with pytest.raises(SourceError, match=r"d\.yaml:4:3: invalid YAML: duplicate key 'selector'"):
        load_all(SELECTOR_TWICE, "d.yaml", max_nodes=LIMIT)


def test_merge_keys_merge_and_local_keys_win() -> None:
    text = "base: &base {cpu: 1, memory: 2}\nweb:\n  <<: *base\n  memory: 4\n"
    assert load(text)["web"] == {"cpu": 1, "memory": 4}


def test_a_merge_after_explicit_keys_overrides_them_as_go_yaml_v2_does() -> None:
    assert load("x: 1\n<<: {x: 2, z: 3}\n") == {"x": 2, "z": 3}


def test_float_keys_become_go_s_32_bit_shortest_text() -> None:
    assert load("1.0: a\n1e3: b\n0.1234567891: c\n1e6: d\n-0.0: e\n") == {
        "1": "a",
        "1000": "b",
        "0.12345679": "c",
        "1e+06": "d",
        "-0": "e",
    }


@pytest.mark.parametrize(
    "text",
    [
        "~: a\n",
        "9223372036854775808: a\n",
        "a: !!bool 1\n",
        "a: !!int 1.5\n",
        "a: !!null x\n",
        "a: !!map x\n",
        "a: !!seq x\n",
        "a: !!str {b: 1}\n",
    ],
)
def test_what_argo_cd_cannot_read_is_refused(text: str) -> None:
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml:1:\d+: invalid YAML: "):
        load(text)


def test_the_non_specific_tag_makes_a_string() -> None:
    assert load("a: ! 12\nb: ! true\n") == {"a": "12", "b": "true"}


def test_a_last_block_scalar_without_a_final_newline_keeps_one() -> None:
    assert load("a: |\n  x") == {"a": "x\n"}  # Argo CD's splitter ends every line


def test_merge_key_with_a_list_of_mappings() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc:\n  <<: [*a, *b]\n  w: 0\n"
    assert load(text)["c"] == {"x": 1, "z": 3, "w": 0}


def test_alias_bomb_is_refused_with_a_clear_message() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    with pytest.raises(SourceError) as caught:
        load_all("\n".join(lines) + "\n", "templates/bomb.yaml", max_nodes=2_000_000)
    message = str(caught.value)
    assert message.startswith("templates/bomb.yaml:1:")
    assert "alias bomb" in message and "limit 2000000" in message


def test_aliases_within_the_limit_are_expanded() -> None:
    assert load("a: &a [1, 2]\nb: *a\n") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize(
    "tagged",
    [
        "!!binary aGVsbG8=",
        "!!python/object/apply:os.system ['id']",
        "!!python/name:os.system",
        "!!python/object:builtins.dict {}",
        "!!timestamp 2024-01-01",
        "!!set {a, b}",
        "!custom value",
    ],
)
def test_tags_without_a_json_form_are_refused(tagged: str) -> None:
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml:2:\d+: .*unsupported YAML tag"):
        load(f"ok: 1\nkey: {tagged}\n")


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml:3:\d+: invalid YAML: mapping"):
        load("a: 1\nb: 2\nc: d: e\n")


def test_control_character_error_names_the_line() -> None:
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml:2: invalid YAML: .*U\+0007"):
        load("a: 1\nb: x\x07y\n")


def test_load_all_gives_each_document_its_start_line() -> None:
    stream = "---\na: 1\n---\n# comment\nb: 2\n---\n"
    assert load_all(stream, "s.yaml", max_nodes=LIMIT) == [(2, {"a": 1}), (5, {"b": 2}), (7, None)]


def test_load_one_refuses_several_documents() -> None:
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml:3: expected one YAML document"):
        load("a: 1\n---\nb: 2\n")


# --- emitter: canonical form ---------------------------------------------------------------

AMBIGUOUS = [
    "yes",
    "Yes",
    "NO",
    "on",
    "Off",
    "y",
    "n",
    "true",
    "False",
    "0755",
    "1.10",
    "1e3",
    "~",
    "null",
    "Null",
    "",
    "2024-01-01",
    "2001-12-14 21:59:43.10 -5",
    "12:30",
    "1:20:30",
    "=",
    "<<",
    "0o17",
    "0x1F",
    "0b11",
    ".inf",
    "-.Inf",
    ".NaN",
    "+1",
    "-2",
    "1_000",
    "08",
    ".5",
    "1.",
]


@pytest.mark.parametrize("text", AMBIGUOUS)
def test_strings_any_yaml_reader_could_misread_are_quoted(text: str) -> None:
    emitted = emit_value({"k": text})
    assert emitted in (f"k: '{text}'", f'k: "{text}"')
    # Every reader (Kubernetes rules, PyYAML's YAML 1.1) gets the string back.
    assert load(emitted) == {"k": text}
    assert yaml.safe_load(emitted) == {"k": text}


@pytest.mark.parametrize("text", ["web", "v1.4.2", "nginx:1.27", "a b", "123456789012.dkr"])
def test_plain_strings_stay_plain(text: str) -> None:
    assert emit_value({"k": text}) == f"k: {text}"


def test_kubernetes_keys_come_first_then_code_point_order() -> None:
    document = {
        "spec": 1,
        "metadata": {"name": "x"},
        "Zeta": 2,
        "kind": "K",
        "apiVersion": "v1",
        "alpha": 3,
        "_x": 4,
        "é": 5,
        "Alpha": 6,
    }
    assert emit_stream([document]) == (
        "---\napiVersion: v1\nkind: K\nmetadata:\n  name: x\n"
        "Alpha: 6\nZeta: 2\n_x: 4\nalpha: 3\nspec: 1\né: 5\n"
    )


def test_nested_mappings_are_sorted_and_lists_keep_their_order() -> None:
    document = {"data": {"b": 1, "a": 2}, "items": [3, 1, 2]}
    assert emit_stream([document]) == "---\ndata:\n  a: 2\n  b: 1\nitems:\n- 3\n- 1\n- 2\n"


def test_non_string_keys_become_strings_as_in_json() -> None:
    assert emit_value({1: "a", None: "b", False: "c", 2.5: "d"}) == (
        "'1': a\n'2.5': d\n'false': c\n'null': b"
    )


def test_every_document_starts_with_a_separator_and_the_stream_ends_with_a_newline() -> None:
    text = emit_stream([{"a": 1}, {"b": 2}])
    assert text == "---\na: 1\n---\nb: 2\n"


def test_multi_line_strings_are_block_literals() -> None:
    text = emit_stream([{"script": "#!/bin/sh\necho hi\n", "two": "a\nb"}])
    assert text == "---\nscript: |\n  #!/bin/sh\n  echo hi\ntwo: |-\n  a\n  b\n"
    assert load(text) == {"script": "#!/bin/sh\necho hi\n", "two": "a\nb"}


def test_shared_objects_are_written_out_without_anchors() -> None:
    shared = {"cpu": "1"}
    text = emit_stream([{"a": shared, "b": shared, "c": [shared, shared]}])
    assert "&" not in text and "*" not in text
    assert text.count("cpu: '1'") == 4


def test_long_lines_are_never_folded() -> None:
    long = "x " * 500
    assert emit_value({"k": long.strip()}) == f"k: {long.strip()}"


def test_unicode_is_written_as_is() -> None:
    assert emit_value({"k": "café ✓"}) == "k: café ✓"


@pytest.mark.parametrize(
    ("number", "written"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1e20, "1.0e+20"),
        (1e-7, "1.0e-07"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_numbers_have_one_spelling(number: Any, written: str) -> None:
    assert emit_value({"k": number}) == f"k: {written}"


@pytest.mark.parametrize(
    ("value", "written"), [("x = 1\n\n", "|+\n  x = 1\n"), ("\n", "|2+\n"), ("x\n", "|\n  x")]
)
def test_to_yaml_keeps_the_trailing_newlines_of_a_last_block(value: str, written: str) -> None:
    assert emit_value(value) == written
    assert load(f"k: {emit_value(value)}\nnext: 1\n") == {"k": value, "next": 1}


@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029", "\x85x", "a\rb", "l1\nl2\u2028\n"])
def test_strings_with_unicode_line_breaks_are_double_quoted_and_escaped(text: str) -> None:
    emitted = emit_value({"k": text})
    assert emitted.startswith('k: "') and "\u2028" not in emitted and "\x85" not in emitted
    assert load(emitted) == {"k": text}


def test_quote_escapes_what_a_yaml_reader_would_refuse_or_fold() -> None:
    from cmp.source.emit import quote_scalar

    text = 'a\x85b\x7f\x9f\u2028\u2029\ufeff\ufffe\uffff"\n'
    quoted = quote_scalar(text)
    assert quoted == '"a\\u0085b\\u007f\\u009f\\u2028\\u2029\\ufeff\\ufffe\\uffff\\"\\n"'
    assert load(f"k: {quoted}\n") == {"k": text} and json.loads(quoted) == text


def test_a_document_marker_is_a_line_of_its_own() -> None:
    assert emit_stream([{}, [], "x", {"a": 1}]) == "---\n{}\n---\n[]\n---\nx\n---\na: 1\n"


def test_to_yaml_value_has_no_document_markers() -> None:
    assert emit_value("yes") == "'yes'"
    assert emit_value(5) == "5"
    assert emit_value([1, "on"]) == "- 1\n- 'on'"


@pytest.mark.parametrize(
    "document",
    [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {t or "empty": t for t in AMBIGUOUS},
        },
        {"s": ["line1\nline2\n", "a\nb", "trailing \nspace", "x\n\n", "\ttab\nx", " lead\nx"]},
        {"n": [0, -1, 2**62, 1.5, -0.0, 1e300], "b": [True, False], "z": None, "e": {}, "l": []},
    ],
)
def test_emit_then_load_is_a_round_trip_and_a_fixed_point(document: dict[str, Any]) -> None:
    text = emit_stream([document])
    assert text.endswith("\n")
    assert load_all(text, "out.yaml", max_nodes=LIMIT) == [(2, document)]
    assert emit_stream([load(text)]) == text


# --- whole renders: fixed point and determinism --------------------------------------------

REPO = Path(__file__).resolve().parents[3]

TRICKY_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: tricky
  annotations: {{ values.annotations | to_json }}
data:
{% for text in values.strings %}
  k{{ loop.index }}: {{ text | to_json }}
{% endfor %}
  script: {{ values.script | to_json }}
binaryData: {}
"""
TRICKY_VALUES = {
    "strings": AMBIGUOUS,
    "script": "#!/bin/sh\nset -eu\necho 'on' \"yes\"\n",
    "annotations": {"z.io/b": "1", "a.io/a": "y", "é": "x", "B": "12:30"},
}


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A copy of the example app (web + the shared library), with its tagpin.lock."""
    shutil.copytree(REPO / "examples", tmp_path / "repo" / "examples")
    return tmp_path / "repo"


def fixed_point(first: str, tmp_path: Path) -> str:
    """Write a render's output back as a plain-YAML app and render that."""
    app = build_tree(tmp_path / "again", {"tagpin.yaml": "{}\n", "templates/all.yaml": first})
    return render_text(app)


def test_render_of_the_example_is_a_fixed_point(example_repo: Path, tmp_path: Path) -> None:
    first = render_text(
        example_repo / "examples/web",
        example_repo,
        app=AppInfo(instance="web", namespace="prod", revision="a" * 40),
    )
    assert first.startswith("---\napiVersion: ") and first.endswith("\n")
    assert "@sha256:" in first
    assert fixed_point(first, tmp_path) == first


def test_render_of_tricky_strings_is_a_fixed_point(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path / "app",
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": json.dumps(TRICKY_VALUES),
            "templates/tricky.yaml.j2": TRICKY_TEMPLATE,
        },
    )
    first = render_text(app)
    [body] = [document for _, document in load_all(first, "out", max_nodes=LIMIT)]
    assert body["data"]["script"] == TRICKY_VALUES["script"]
    assert [body["data"][f"k{i + 1}"] for i in range(len(AMBIGUOUS))] == AMBIGUOUS
    assert "script: |\n" in first
    assert fixed_point(first, tmp_path) == first


@pytest.mark.parametrize(
    "environment",
    [
        {"PYTHONHASHSEED": "1", "TZ": "Pacific/Kiritimati", "LC_ALL": "C.UTF-8"},
        {"PYTHONHASHSEED": "4242", "TZ": "America/Adak", "LC_ALL": "POSIX"},
        {"PYTHONHASHSEED": "random", "TZ": "UTC", "LC_ALL": "C", "LANG": "tr_TR.UTF-8"},
    ],
)
def test_cli_output_does_not_depend_on_hash_seed_time_zone_or_locale(
    example_repo: Path, tmp_path: Path, environment: dict[str, str]
) -> None:
    app = build_tree(
        example_repo / "examples/web",
        {
            "templates/tricky.yaml.j2": TRICKY_TEMPLATE,
            "values-tricky.yaml": json.dumps(TRICKY_VALUES),
        },
    )
    args = [
        "render",
        str(app),
        "--repo-root",
        str(example_repo),
        "--app-name",
        "argocd_web",
        "-n",
        "prod",
        "--revision",
        "b" * 40,
        "-f",
        "values-tricky.yaml",
        "--set",
        "replicas=3",
        "--env",
        "LOG_LEVEL=debug",
    ]
    reference = run_cli(args, env={"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C.UTF-8"})
    assert reference.returncode == 0, reference.stderr.decode()
    done = run_cli(args, env=environment)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == reference.stdout
    assert b"replicas: 3" in done.stdout and b"value: debug" in done.stdout


def test_output_does_not_depend_on_file_system_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files: dict[str, str | bytes] = {
        "tagpin.yaml": "valuesFiles: [b.yaml, a.yaml]\n",
        "values.yaml": "x: 0\n",
        "a.yaml": "x: 1\n",
        "b.yaml": "x: 2\nw: 2\n",
        **{
            f"templates/{d}/{n}.yaml.j2": cm(f"{d}-{n}", x="'{{ values.x }}'", w="'{{ values.w }}'")
            for d in ("b", "a", "c/d", "A")
            for n in ("z", "m", "a", "_")
        },
    }
    names = list(files)
    first = render_text(build_tree(tmp_path / "forward", files, order=names))
    second = render_text(build_tree(tmp_path / "backward", files, order=reversed(names)))
    assert first == second
    assert first.count("---\n") == 12  # the `_` partials render nothing
    assert "  x: '1'\n" in first

    # Directory listings come back in whatever order the file system keeps; reverse them all.
    real_walk = os.walk

    def reversed_walk(top: Any, *args: Any, **kwargs: Any) -> Any:
        for directory, dirnames, filenames in real_walk(top, *args, **kwargs):
            dirnames.reverse()
            filenames.reverse()
            yield directory, dirnames, filenames

    monkeypatch.setattr(os, "walk", reversed_walk)
    assert render_text(tmp_path / "forward") == first


def test_a_plain_integer_of_thousands_of_digits_reads_as_go_yaml_reads_it() -> None:
    """Past 64 bits go-yaml v2 reads such a number as text (ParseInt, ParseUint and ParseFloat
    all fail); Python's int() refuses 4,300 digits and more, which was an internal error."""
    many = "9" * 5000
    ((_, body),) = load_all(f"a: {many}\nb: {'0' * 5000}1\n", "values.yaml", max_nodes=100)
    assert body == {"a": many, "b": 1}
