"""Differential tests against real readers: what Argo CD reads from tagpin's output is what it
reads from tagpin's input, and every reader agrees on the output.

Argo CD's reading is a real go-yaml v2 (its document splitter + sigs.k8s.io/yaml), built from
Debian's sources by tests/support/goyaml.py; the others are yaml.v3 (same binary), PyYAML
(YAML 1.1), ruamel.yaml (YAML 1.2) and kustomize (`kubectl kustomize`, read back by the Argo CD
reader). Inputs: go-yaml's own decode test table, the classes found in issue 19, and
hypothesis-generated scalars. An input tagpin refuses (duplicate keys, unknown tags, null keys:
docs/yaml.md) is not compared.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from cmp.errors import SourceError
from cmp.source.emit import emit_stream, emit_value, quote_scalar
from cmp.source.yamlread import load_all
from tests.support.apptree import build_tree, run_cli
from tests.support.goyaml import GoRead, GoReader, build, decode_test_cases
from tests.support.kustomize import kubectl
from tests.support.yaml11 import Yaml11Reader

LIMIT = 100_000


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("goyaml"))


class Readers:
    """The compiled readers: go-yaml (`read`: Argo CD's reading and yaml.v3's) and the `yaml`
    npm package in YAML 1.1 mode (`yaml11`)."""

    def __init__(self, go: GoReader, yaml11: Yaml11Reader) -> None:
        self._go = go
        self.yaml11 = yaml11

    def read(self, text: str) -> GoRead:
        return self._go.read(text)


@pytest.fixture(scope="module")
def go(go_binary: Path) -> Iterator[Readers]:
    reader, yaml11 = GoReader(go_binary), Yaml11Reader()
    yield Readers(reader, yaml11)
    reader.close()
    yaml11.close()


# -- comparing what readers read -------------------------------------------------------------


def plain(value: Any) -> Any:
    """A Python reader's value in the Go reader's terms (JSON, with {"!tag": …} markers)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else f"!key {k!r}"): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, datetime.date):
        return {"!timestamp": str(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"!float": "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")}
    if isinstance(value, bytes):
        return {"!binary": value.decode("latin-1")}
    return value


def agree(a: Any, b: Any) -> bool:
    """Same JSON value: numbers compare as numbers (JSON has one number type; Go writes the
    float 1.0 as 1), integers exactly; a marker only matches the same kind of marker."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b if isinstance(a, int) and isinstance(b, int) else float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        markers = [next(iter(d)) for d in (a, b) if len(d) == 1 and next(iter(d)).startswith("!")]
        if markers:
            return len(markers) == 2 and markers[0] == markers[1]
        return a.keys() == b.keys() and all(agree(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(agree(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def documents(values: list[Any] | None) -> list[Any] | None:
    return None if values is None else [plain(v) for v in values if v is not None]


def pyyaml_read(text: str) -> list[Any] | None:
    return documents(list(yaml.safe_load_all(text)))


def ruamel_read(text: str) -> list[Any] | None:
    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 2)
    return documents(list(reader.load_all(text)))


def non_finite(values: list[Any]) -> bool:
    return "!float" in repr(values)


def check_output(go: Readers, output: str, expected: list[Any]) -> GoRead:
    """Every reader reads `expected` (tagpin's own reading, as JSON) from `output`."""
    read = go.read(output)
    readers = {
        "yaml.v3": documents(read.v3),
        "PyYAML": pyyaml_read(output),
        "ruamel.yaml 1.2": ruamel_read(output),
        "yaml (npm) 1.1": go.yaml11.read(output),
    }
    if read.argo is None:
        # JSON has no .inf/.nan: Argo CD fails on them in the input and the output alike.
        assert "unsupported value" in read.argo_error and non_finite(expected), read.argo_error
    else:
        readers["Argo CD (go-yaml v2)"] = read.argo
    for name, got in readers.items():
        assert got is not None and agree(got, expected), (
            f"{name} reads {got!r} from tagpin's output, tagpin means {expected!r}\n"
            f"output:\n{output}"
        )
    return read


def check_accepted(go: Readers, text: str) -> None:
    """Like `check`, and tagpin refuses `text` only when Argo CD cannot read it either."""
    if check(go, text) is None:
        assert go.read(text).argo is None, f"tagpin refuses what Argo CD reads:\n{text}"


def check(go: Readers, text: str) -> str | None:
    """tagpin's output for `text` (None when tagpin refuses it or it holds no objects), after
    checking it reads as the input does."""
    try:
        loaded = [doc for _, doc in load_all(text, "in.yaml", max_nodes=LIMIT)]
    except SourceError:
        return None
    objects = [doc for doc in loaded if doc is not None]
    if not objects or not all(isinstance(doc, dict) for doc in objects):
        return None  # tagpin only renders mappings (Kubernetes objects)
    output = emit_stream(objects)
    read = check_output(go, output, documents(objects) or [])
    source = go.read(text)
    if source.argo is not None and read.argo is not None:
        assert agree(read.argo, source.argo), (
            f"Argo CD reads {source.argo!r} from the input, {read.argo!r} from tagpin's output\n"
            f"input:\n{text}\noutput:\n{output}"
        )
    elif read.argo is None:
        assert source.argo is None, f"Argo CD reads the input but not the output:\n{output}"
    return output


# -- go-yaml's own decode tests --------------------------------------------------------------


@pytest.mark.parametrize("library", ["gopkg.in/yaml.v2", "gopkg.in/yaml.v3"])
def test_go_yaml_decode_tests_read_the_same_through_tagpin(
    go: Readers, go_binary: Path, library: str
) -> None:
    cases = decode_test_cases(go_binary, library)
    assert len(cases) > 100
    compared = [text for text in cases if check(go, text) is not None]
    assert len(compared) > 80  # most of each table are mappings tagpin accepts


# -- the classes of issue 19 -----------------------------------------------------------------

SCALARS = [
    # go-yaml v2 deletes every `_` and lets `0b` carry a sign.
    "+_1",
    "-_1",
    "1e_3",
    "1_e3",
    "1__0",
    "0x_1F",
    "0_8",
    "0b-1",
    "0b+1",
    "-0b1",
    "-0b-1",
    "0b_1",
    "0o-1",
    "0o_17",
    "_1",
    "+",
    "-",
    "-_",
    "0b",
    "0x",
    "0o",
    "08",
    "09.5",
    "1_000",
    "1.10",
    # `.`-first text is read by strconv.ParseFloat alone: no underscores.
    "._5",
    ".5_",
    ".5",
    "+.5",
    "-.5e3",
    ".5e",
    ".",
    "._",
    # beyond 64 bits and out of float range
    "0x1ffffffffffffffff",
    "0o7777777777777777777777",
    "0777777777777777777777777",
    "0b11111111111111111111111111111111111111111111111111111111111111111",
    "99999999999999999999",
    "-9223372036854775809",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1.5e400",
    "-1.5e400",
    ".5e-400",
    "1e-400",
    # timestamps (one-digit fields), sexagesimal, bools and nulls of YAML 1.1
    "2024-01-01T1:2:3Z",
    "2024-1-1",
    "2024-01-01 1:2:3",
    "2024-1-1t1:2:3.5+01:00",
    "2001-12-14 21:59:43.10 -5",
    "12:30",
    "1:20:30",
    "190:20:30.15",
    # the `yaml` npm package in YAML 1.1 mode: sexagesimal numbers from 0 or with a sign, and
    # floats with no digit (NaN)
    "0:30",
    "+07:00",
    "-07:00",
    "00:00:01",
    "0:30.5",
    "-.",
    "+.",
    "e5",
    "+E3",
    "._e1",
    "=",
    "<<",
    "y",
    "n",
    "on",
    "NO",
    "~",
    "null",
    "",
    ".nan",
    "1.0",
    "1.",
    "1e3",
    "1E+3",
    "0o17",
    "017",
    "v1.2",
    "1a2b3c",
]
KEYS = [
    "1.0",
    "1e3",
    "1e6",
    "0.1234567891",
    "-0.0",
    "1e-5",
    "123456789",
    "3.4e38",
    "1e39",
    "0x10",
    "017",
    "y",
    "off",
    "+_1",
    "1e400",
    "2024-01-01",
    "9223372036854775807",
]


@pytest.mark.parametrize("scalar", SCALARS)
def test_a_plain_scalar_reads_the_same_through_tagpin(go: Readers, scalar: str) -> None:
    check_accepted(go, f"value: {scalar}\n")
    check_accepted(go, f"list: [{scalar}]\n")
    # The same text as a string (quoted in the input) stays a string for every reader.
    assert check(go, f"value: '{scalar}'\n") is not None


@pytest.mark.parametrize("key", KEYS)
def test_a_non_string_key_becomes_the_text_sigs_k8s_yaml_makes(go: Readers, key: str) -> None:
    assert check(go, f"{key}: v\nother: w\n") is not None


@pytest.mark.parametrize(
    "text",
    [
        "~: v\n",
        "null: v\n",
        "9223372036854775808: v\n",
        "1: a\n1.0: b\n",
        "a: 1\na: 2\n",
        "a: {x: 1}\na: {x: 1, y: 2}\n",
        "a: 1\na: 1.0\n",
        "a: !custom 1\n",
    ],
)
def test_what_argo_cd_reads_differently_or_not_at_all_is_refused(go: Readers, text: str) -> None:
    # Null and 64-bit unsigned keys: sigs.k8s.io/yaml fails. Keys that collide once made text,
    # duplicate keys and unknown tags: go-yaml keeps one silently (docs/yaml.md).
    with pytest.raises(SourceError, match=r"^in\.yaml:\d+:\d+: invalid YAML: "):
        load_all(text, "in.yaml", max_nodes=LIMIT, warnings=[])


@pytest.mark.parametrize(
    "text",
    [
        "spec:\n  selector: {matchLabels: {app: web}}\n  x: 1\n  selector:\n"
        "    matchLabels:\n      app: web\n",
        "a: &v [1, {b: yes}]\na: [1, {b: true}]\nc: *v\n",
        "a: 1\n1: b\na: 1\n",
    ],
)
def test_a_key_given_twice_alike_reads_as_argo_cd_reads_it(go: Readers, text: str) -> None:
    """go-yaml v2 keeps the last of two equal values: tagpin reads the same, with a warning,
    and writes output Argo CD reads the same again."""
    warnings: list[str] = []
    loaded = [doc for _, doc in load_all(text, "in.yaml", max_nodes=LIMIT, warnings=warnings)]
    assert warnings and all("is given twice in one mapping" in w for w in warnings)
    source = go.read(text)
    assert source.argo is not None and agree(source.argo, documents(loaded))
    check_output(go, emit_stream(loaded), documents(loaded) or [])


@pytest.mark.parametrize(
    "text",
    [
        "x: 1\n<<: {x: 2, z: 3}\n",  # a merge after an explicit key overrides it (go-yaml v2)
        "<<: {x: 2, z: 3}\nx: 1\n",
        "c:\n  <<: [{x: 1}, {x: 2, z: 3}]\n  w: 0\n",
        "a: &a {x: 1}\nb:\n  x: 0\n  <<: *a\n  y: 2\n",
        "a: |\n  x",  # a last block scalar without a final newline: Argo CD adds the newline
        "a: |+\n  x",
        "a: |-\n  x",
        "a: >\n  x\n  y",
        "a: |+\n  x\n\n",
        "a: ! 12\nb: ! true\nc: ! ''\n! 1: d\n",  # the non-specific tag: strings
        "a: !!float 1\nb: !!int '0x10'\nc: !!str 1.0\n",
        'a: "x\\u2028y"\nb: "x\\u2029"\nc: "\\x85"\nd: "a\\rb"\ne: "\\x7f\\u0080\\ufeff"\n',
        'a: "line\\u2028\\n"\nb: "tab\\there\\n\\n"\nc: " lead\\ntrail "\n',
        "a: 1\r\nb: |\r\n  x\r\n  y\r\n",
    ],
)
def test_merges_tags_block_ends_and_breaks_read_the_same_through_tagpin(
    go: Readers, text: str
) -> None:
    assert check(go, text) is not None


def test_a_merge_after_an_explicit_key_wins_as_in_argo_cd(go: Readers) -> None:
    text = "x: 1\n<<: {x: 2, z: 3}\n"
    assert go.read(text).argo == [{"x": 2, "z": 3}]
    assert load_all(text, "in.yaml", max_nodes=LIMIT) == [(1, {"x": 2, "z": 3})]


# -- the template filters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["x = 1\n\n", "\n", "\n\n\n", "a\n", "a", "x\u2028y\n", "k\x85v\n", " lead\n", "trail \n\n"],
)
def test_to_yaml_keeps_every_trailing_newline_of_the_last_block(go: Readers, value: str) -> None:
    # A bare block scalar with an indentation indicator (`|2`, for a leading space) cannot be
    # re-indented: that holds for Helm's toYaml too.
    shapes = [{"data": {"config.toml": value}}, [value]] + ([] if value[:1] == " " else [value])
    for shape in shapes:
        text = f"root:\n  {emit_value(shape).replace(chr(10), chr(10) + '  ')}\nafter: 1\n"
        assert go.read(text).argo == [{"root": shape, "after": 1}], text


COMMENT_LIKE = ["\n\n#1_000", " #c0o0755-01\n\n", "#a\n#b\n", "  #x\n\n#y", "\n# note"]


@pytest.mark.parametrize("value", COMMENT_LIKE)
def test_to_yaml_of_comment_like_text_reads_the_same_at_any_indentation(
    go: Readers, value: str
) -> None:
    """`key: {{ v | to_yaml }}` under a nested key: as a block scalar indented for column 0,
    these lines would read as comments (the value silently ''); every reader reads the text."""
    shown = emit_value(value)
    for text, expected in (
        (f"key: {shown}\n", {"key": value}),
        (f"a:\n  b:\n    key: {shown}\n", {"a": {"b": {"key": value}}}),
        (f"list:\n  - {shown}\n", {"list": [value]}),
    ):
        check_output(go, text, [expected])


def test_a_block_scalar_ending_the_stream_without_a_line_break_is_argo_cds_reading(
    go: Readers, tmp_path: Path
) -> None:
    """Argo CD's splitter ends the last line too, so it reads "---\nx\n" where go-yaml alone
    reads "---\nx": tagpin keeps what would deploy and says the file is read two ways."""
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  b: |\n    ---\n    x"
    assert go.read(text).argo[0]["data"]["b"] == "---\nx\n"  # type: ignore[index]
    assert go.read(text).v3[0]["data"]["b"] == "---\nx"  # type: ignore[index]
    output = check(go, text)  # every reader reads tagpin's output as Argo CD reads the input
    assert output is not None and "b: |\n    ---\n    x\n" in output
    (tmp_path / "in.yaml").write_text(text)
    done = run_cli(["pin", str(tmp_path / "in.yaml")])
    assert done.returncode == 0 and done.stdout.decode() == output
    assert (
        f"tagpin: warning: {tmp_path / 'in.yaml'}:5: this block scalar ends the file with no "
        "line break after it"
    ) in done.stderr.decode()
    (tmp_path / "ended.yaml").write_text(text + "\n")
    assert run_cli(["pin", str(tmp_path / "ended.yaml")]).stderr == b""


GENERATED = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=12))
@GENERATED
def test_quote_gives_a_scalar_every_reader_reads_as_the_string(go: Readers, text: str) -> None:
    output = f"---\nvalue: {quote_scalar(text)}\n"
    check_output(go, output, [{"value": text}])


# -- generated scalars -----------------------------------------------------------------------

NUMBERISH = st.one_of(
    st.text("0123456789+-._eExXoObB", min_size=1, max_size=8),
    st.from_regex(r"[-+]?[0-9_]{0,22}(?:\.[0-9_]*)?(?:[eE][-+]?[0-9_]{1,3})?", fullmatch=True),
    st.from_regex(r"[-+_]*0[bBoOxX][-+_]?[0-9a-fA-F_]{1,20}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}"
        r"(?:\.[0-9]{0,3})?(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?)?)?",
        fullmatch=True,
    ),
    st.floats().map(repr),
    st.integers(-(2**70), 2**70).map(str),
)


@given(NUMBERISH)
@GENERATED
def test_a_generated_plain_scalar_reads_the_same_through_tagpin(go: Readers, text: str) -> None:
    check(go, f"value: {text}\n")  # text that is not valid YAML is refused, not compared


@given(NUMBERISH)
@GENERATED
def test_a_generated_string_stays_a_string_for_every_reader(go: Readers, text: str) -> None:
    output = emit_stream([{"value": text, "list": [text]}])
    check_output(go, output, [{"value": text, "list": [text]}])


@given(st.floats(allow_nan=False, allow_infinity=False))
@GENERATED
def test_a_generated_float_key_becomes_the_text_argo_cd_makes(go: Readers, number: float) -> None:
    check(go, f"{number!r}: v\n")


LEAF = st.one_of(NUMBERISH, st.sampled_from(SCALARS + KEYS))


@st.composite
def yaml_texts(draw: st.DrawFn) -> str:
    """A random block-style document whose keys and plain scalars are tricky texts; quoted
    leaves with escapes, lists, nesting and a trailing block scalar are mixed in."""

    def scalar() -> str:
        text = draw(LEAF)
        style = draw(st.sampled_from(["plain", "plain", "single", "double"]))
        if style == "single":
            return "'" + text.replace("'", "''") + "'"
        return quote_scalar(text) if style == "double" else text

    def mapping(indent: int, depth: int) -> list[str]:
        lines = []
        for _ in range(draw(st.integers(1, 3))):
            key = f"{' ' * indent}{scalar()}:"
            kind = draw(st.sampled_from(["scalar", "list", "map"] if depth else ["scalar"]))
            if kind == "scalar":
                lines.append(f"{key} {scalar()}")
            elif kind == "list":
                lines.append(key)
                lines += [f"{' ' * indent}- {scalar()}" for _ in range(draw(st.integers(1, 3)))]
            else:
                lines += [key, *mapping(indent + 2, depth - 1)]
        return lines

    lines = mapping(0, 2)
    if draw(st.booleans()):
        lines += [
            "last: |" + draw(st.sampled_from(["", "+", "-"])),
            *[
                f"  {draw(st.sampled_from(['x', '', 'y = 1']))}"
                for _ in range(draw(st.integers(1, 3)))
            ],
        ]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@given(yaml_texts())
@GENERATED
def test_a_generated_document_reads_the_same_through_tagpin(go: Readers, text: str) -> None:
    check(go, text)


# -- kustomize -------------------------------------------------------------------------------


def test_kustomize_reads_tagpin_output_as_tagpin_means_it(
    go: Readers, go_binary: Path, tmp_path: Path
) -> None:
    """Every output above, wrapped as objects, through `kubectl kustomize` (kyaml, yaml.v3
    based) and read back as Argo CD reads it."""
    inputs = [f"value: {s}\n" for s in SCALARS] + [f"value: '{s}'\n" for s in SCALARS]
    inputs += [f"{k}: v\n" for k in KEYS] + decode_test_cases(go_binary)
    objects: list[Any] = []
    for text in inputs:
        try:
            loaded = [doc for _, doc in load_all(text, "in.yaml", max_nodes=LIMIT)]
        except SourceError:
            continue
        body = [doc for doc in loaded if doc is not None]
        if body and all(isinstance(doc, dict) for doc in body) and not non_finite(plain(body)):
            objects.append(
                {
                    "apiVersion": "example.com/v1",
                    "kind": "Case",
                    "metadata": {"name": f"case-{len(objects)}"},
                    "spec": body,
                }
            )
    output = emit_stream(objects)
    expected = go.read(output).argo
    assert expected is not None and len(expected) == len(objects) > 100
    app = build_tree(
        tmp_path / "k",
        {"kustomization.yaml": "resources: [objects.yaml]\n", "objects.yaml": output},
    )
    done = subprocess.run(
        [kubectl(), "kustomize", str(app)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    built = go.read(done.stdout).argo
    assert built is not None
    by_name = {doc["metadata"]["name"]: doc["spec"] for doc in built}
    for want in expected:
        assert agree(by_name[want["metadata"]["name"]], want["spec"]), want


# -- through the CLI -------------------------------------------------------------------------


def test_a_rendered_app_reads_in_argo_cd_as_its_files_do(go: Readers, tmp_path: Path) -> None:
    """A plain-YAML app with every scalar above, and a template using to_yaml and quote, through
    `tagpin render`: Argo CD reads the plain file's values, the values file's strings."""
    valid = [s for s in SCALARS if s not in ("-", ".inf", ".nan")]  # `-` starts a list
    plain_file = (
        "apiVersion: example.com/v1\nkind: Case\nmetadata:\n  name: plain\nspec:\n"
        + "".join(f"  k{i}: {s}\n" for i, s in enumerate(valid))
        + "  1.0: float key\n  x: 1\n  <<: {x: 2}\n  script: |\n    a\n"
    )
    values = {
        "config": "x = 1\n\n",
        "strings": ["\x85", "a\u2028b", "\x7f", "\ufffe", "y", "+_1", "2024-1-1"],
    }
    template = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: filters\n"
        "data: {{ {'config.toml': values.config} | to_yaml | nindent(2) }}\n"
        "quoted:\n{% for s in values.strings %}\n  s{{ loop.index }}: {{ s | quote }}\n"
        "{% endfor %}\n"
    )
    app = build_tree(
        tmp_path / "app",
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": json.dumps(values),
            "templates/plain.yaml": plain_file.rstrip("\n"),  # no final newline, as in the issue
            "templates/filters.yaml.j2": template,
        },
    )
    done = run_cli(["render", str(app)])
    assert done.returncode == 0, done.stderr.decode()
    output = done.stdout.decode()
    read = go.read(output).argo
    assert read is not None
    by_name = {doc["metadata"]["name"]: doc for doc in read}
    source = go.read(plain_file.rstrip("\n")).argo
    assert source is not None
    assert agree(by_name["plain"], source[0])
    assert by_name["filters"]["data"] == {"config.toml": "x = 1\n\n"}
    assert by_name["filters"]["quoted"] == {f"s{i + 1}": s for i, s in enumerate(values["strings"])}
    check_output(go, output, read)
