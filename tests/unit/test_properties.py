"""Properties over generated input (hypothesis): image references parse and print back
unchanged, values merge as documented, and the emitter's output reads back as what it wrote.

Examples are kept to ~200 per property so the suite stays fast; failures print a minimal case.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cmp.errors import ImageError
from cmp.images.reference import ImageRef, parse_image, reference_pattern
from cmp.source.emit import emit_stream
from cmp.source.values import layer, merge
from cmp.source.yamlread import load_all

EXAMPLES = settings(max_examples=200, deadline=None)

# -- image references ------------------------------------------------------------------------

COMPONENT = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
# Without a host, the first component must not look like one (no ".", not "localhost").
FIRST_COMPONENT = st.from_regex(
    r"[a-z0-9]{1,8}(?:(?:_|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True
).filter(lambda c: c != "localhost")
LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?"
DOMAIN = st.one_of(
    st.sampled_from(
        [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
            "docker.io",
        ]
    ),
    st.from_regex(rf"{LABEL}(?:\.{LABEL}){{1,3}}(?::[0-9]{{1,5}})?", fullmatch=True),
    st.from_regex(rf"{LABEL}:[0-9]{{1,5}}", fullmatch=True),
)
TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
HEX = "0123456789abcdef"
DIGEST = st.one_of(
    st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h),
    st.text(HEX, min_size=128, max_size=128).map(lambda h: "sha512:" + h),
)


@st.composite
def image_refs(draw: st.DrawFn) -> ImageRef:
    domain = draw(st.one_of(st.just(""), DOMAIN))
    rest = draw(st.lists(COMPONENT, max_size=3))
    first = draw(COMPONENT if domain or not rest else FIRST_COMPONENT)
    path = "/".join([first, *rest])
    return ImageRef(
        domain=domain, path=path, tag=draw(st.none() | TAG), digest=draw(st.none() | DIGEST)
    )


@EXAMPLES
@given(image_refs())
def test_an_image_reference_prints_and_parses_back_to_itself(ref: ImageRef) -> None:
    text = str(ref)
    assert parse_image(text) == ref
    assert str(parse_image(text)) == text  # rewriting changes nothing but the pin
    assert reference_pattern().fullmatch(text)


@EXAMPLES
@given(image_refs(), TAG, DIGEST)
def test_pinning_a_reference_keeps_its_repository_and_round_trips(
    ref: ImageRef, tag: str, digest: str
) -> None:
    pinned = ref.with_pin(tag, digest)
    assert parse_image(str(pinned)) == pinned
    assert (pinned.domain, pinned.path, pinned.tag, pinned.digest) == (
        ref.domain,
        ref.path,
        tag,
        digest,
    )


def near_miss(valid: str, position: int, insert: str) -> str:
    position %= len(valid) + 1
    return valid[:position] + insert + valid[position:]


@EXAMPLES
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            near_miss,
            image_refs().map(str),
            st.integers(0, 400),
            st.text(st.sampled_from(":/@._-A \t\n[]#%é\x00"), min_size=1, max_size=3),
        ),
    )
)
def test_any_text_either_parses_to_what_it_says_or_raises_image_error(text: str) -> None:
    try:
        ref = parse_image(text)
    except ImageError as error:
        assert error.problems and all(problem.strip() for problem in error.problems)
        return
    assert str(ref) == text
    assert reference_pattern().fullmatch(text)


# -- values merge ----------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "image", "tag"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text("xy1.", max_size=3)
VALUES = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=3),
    lambda inner: st.dictionaries(KEYS, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=5)


def check_override_wins(
    base: dict[str, Any], override: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert set(merged) == set(base) | set(override)
    for key, value in merged.items():
        if key not in override:
            assert value == base[key]
        elif isinstance(base.get(key), dict) and isinstance(override[key], dict):
            check_override_wins(base[key], override[key], value)
        else:
            assert value == override[key]  # lists and scalars replace, never concatenate


def scribble(value: Any) -> None:
    """Change every container inside `value` in place."""
    if isinstance(value, dict):
        for inner in value.values():
            scribble(inner)
        value["scribbled"] = True
    elif isinstance(value, list):
        for inner in value:
            scribble(inner)
        value.append("scribbled")


@EXAMPLES
@given(MAPPINGS, MAPPINGS)
def test_merge_keeps_base_keys_lets_the_override_win_and_mutates_nothing(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)

    merged = merge(base, override)

    assert (base, override) == (base_before, override_before)
    check_override_wins(base, override, merged)
    scribble(merged)
    assert override == override_before  # the result shares nothing with the override


@EXAMPLES
@given(MAPPINGS, MAPPINGS)
def test_merge_has_an_identity_and_applying_an_override_twice_changes_nothing(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    assert merge(base, {}) == base
    assert merge({}, override) == override
    assert merge(base, base) == base
    once = merge(base, override)
    assert merge(once, override) == once


@EXAMPLES
@given(st.lists(MAPPINGS, max_size=4))
def test_layering_is_a_left_fold_of_merge_and_owns_its_result(layers: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(layers)
    expected: dict[str, Any] = {}
    for values in layers:
        expected = merge(expected, values)

    layered = layer(layers)

    assert layered == expected
    scribble(layered)
    assert layers == before


# A key's kind never changes between layers (a key is a mapping in every layer or in none):
# then deep merge is associative, so layers may be grouped (e.g. pre-merged files) at will.
def shaped(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    nested = {"map": shaped(depth - 1), "other": shaped(depth - 1)} if depth else {}
    return st.fixed_dictionaries(
        {}, optional={**nested, "list": st.lists(SCALARS, max_size=3), "x": SCALARS, "y": SCALARS}
    )


SHAPED = shaped(3)


@EXAMPLES
@given(SHAPED, SHAPED, SHAPED)
def test_merge_is_associative_when_layers_agree_on_shape(
    a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]
) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


# -- the emitter -----------------------------------------------------------------------------

# Unicode without surrogates (they cannot be encoded as UTF-8); control characters included.
UNICODE = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
SCALAR_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | UNICODE
    | st.floats(allow_nan=False)
)
DOCUMENTS = st.dictionaries(
    UNICODE,
    st.recursive(
        SCALAR_VALUES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(UNICODE, inner, max_size=3),
        max_leaves=10,
    ),
    max_size=5,
)


def read_back(text: str) -> list[Any]:
    return [document for _, document in load_all(text, "emitted.yaml", max_nodes=1_000_000)]


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and 1 from True."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@EXAMPLES
@given(st.lists(DOCUMENTS, min_size=1, max_size=3))
def test_emitted_yaml_reads_back_as_written_and_re_emits_identically(
    documents: list[dict[str, Any]],
) -> None:
    text = emit_stream(documents)

    loaded = read_back(text)

    assert same(loaded, documents)
    assert emit_stream(loaded) == text  # the canonical form is a fixed point


YAML11_TRAPS = st.one_of(
    st.sampled_from(
        [
            "y",
            "Y",
            "yes",
            "No",
            "on",
            "OFF",
            "~",
            "null",
            "",
            "0755",
            "0o17",
            "0x1F",
            "0b101",
            "1_000",
            "1.10",
            "1e3",
            "+1",
            "-.5",
            ".inf",
            "-.Inf",
            ".NaN",
            "2024-01-01",
            "2024-1-1 12:30:00",
            "12:30",
            "1:20:30",
            "190:20:30.15",
            "=",
            "<<",
            "0.",
            "+12e03",
        ]
    ),
    st.from_regex(r"[-+]?[0-9][0-9_]{0,6}(?::[0-5]?[0-9]){1,2}(?:\.[0-9_]{0,3})?", fullmatch=True),
    st.from_regex(
        r"[-+]?(?:[0-9][0-9_]{0,4})?\.[0-9_]{0,4}(?:[eE][-+]?[0-9]{1,3})?", fullmatch=True
    ),
    st.from_regex(r"[-+]?0[bBoOxX][0-9a-fA-F_]{1,6}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}"
        r"(?:\.[0-9]{0,3})?(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?)?)?",
        fullmatch=True,
    ),
)


@EXAMPLES
@given(YAML11_TRAPS)
def test_strings_a_yaml_reader_could_misread_always_come_back_as_strings(text: str) -> None:
    emitted = emit_stream([{"value": text, text: "key"}])

    assert read_back(emitted) == [{"value": text, text: "key"}]  # Kubernetes' rules (go-yaml)
    assert yaml.safe_load(emitted) == {"value": text, text: "key"}  # YAML 1.1 (PyYAML)


@EXAMPLES
@given(UNICODE, UNICODE)
def test_any_unicode_string_survives_a_round_trip(key: str, value: str) -> None:
    emitted = emit_stream([{key: value, "list": [value, key]}])

    assert read_back(emitted) == [{key: value, "list": [value, key]}]
    emitted.encode("utf-8")  # the stream is valid UTF-8
