"""Masterminds/semver v3.4.0 behaviour, mostly from its own tables and Image Updater's docs."""

from __future__ import annotations

import pytest

from cmp.imageupdater.semver import Constraint, Version

# version_test.go@v3.4.0 TestNewVersion "With loose NewVersion": True = parses.
NEW_VERSION = [
    ("1.2.3", True),
    ("1.2.3-alpha.01", False),
    ("1.2.3+test.01", True),
    ("1.2.3-alpha.-1", True),
    ("v1.2.3", True),
    ("1.0", True),
    ("v1.0", True),
    ("1", True),
    ("v1", True),
    ("1.2.beta", False),
    ("v1.2.beta", False),
    ("foo", False),
    ("1.2-5", True),
    ("v1.2-5", True),
    ("1.2-beta.5", True),
    ("v1.2-beta.5", True),
    ("\n1.2", False),
    ("\nv1.2", False),
    ("1.2.0-x.Y.0+metadata", True),
    ("v1.2.0-x.Y.0+metadata", True),
    ("1.2.0-x.Y.0+metadata-width-hypen", True),
    ("1.2.3-rc1-with-hypen", True),
    ("1.2.3.4", False),
    ("v1.2.3.4", False),
    ("1.2.2147483648", True),
    ("1.2147483648.3", True),
    ("2147483648.3.0", True),
    ("12.3.4.1234", False),
    ("20221209-update-renovatejson-v4", True),
    ("1.1.2+.123", False),
    ("1.0.0-alpha_beta", False),
    ("1.0.0-alpha..", False),
    ("1.0.0-alpha..1", False),
    ("9.8.7+meta+meta", False),
    ("1.2.31----RC-SNAPSHOT.12.09.1--.12+788", False),
    ("01.1.1", True),
    ("1.01.1", True),
    ("1.1.01", True),
    # Tags a registry holds, as Image Updater's semver strategy sees them.
    ("20240101", True),
    ("1234", True),
    ("18446744073709551615", True),
    ("18446744073709551616", False),  # overflows Go's uint64
    ("main-abc", False),
    ("latest", False),
    ("V1.2.3", False),
    ("1.2.3\n", False),
    ("", False),
]


@pytest.mark.parametrize(("tag", "parses"), NEW_VERSION)
def test_parse_accepts_what_masterminds_accepts(tag: str, parses: bool) -> None:
    assert (Version.parse(tag) is not None) is parses


# version_test.go@v3.4.0 TestCoerceString, plus leading zeros and numeric-only tags.
@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.0", "1.0.0"),
        ("v1", "1.0.0"),
        ("1.2-5", "1.2.0-5"),
        ("v1.2-beta.5", "1.2.0-beta.5"),
        ("1.2.0-x.Y.0+metadata", "1.2.0-x.Y.0+metadata"),
        ("v1.2.3-rc1-with-hypen", "1.2.3-rc1-with-hypen"),
        ("2024.01.05", "2024.1.5"),
        ("20240101", "20240101.0.0"),
        ("20240101-abc", "20240101.0.0-abc"),
    ],
)
def test_parse_coerces_to_canonical_form(tag: str, canonical: str) -> None:
    version = Version.parse(tag)
    assert version is not None
    assert str(version) == canonical
    assert version.original == tag


# version_test.go@v3.4.0 TestCompare.
@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.2.3", "1.5.1", -1),
        ("2.2.3", "1.5.1", 1),
        ("2.2.3", "2.2.2", 1),
        ("3.2-beta", "3.2-beta", 0),
        ("1.3", "1.1.4", 1),
        ("4.2", "4.2-beta", 1),
        ("4.2-beta", "4.2", -1),
        ("4.2-alpha", "4.2-beta", -1),
        ("4.2-alpha", "4.2-alpha", 0),
        ("4.2-beta.2", "4.2-beta.1", 1),
        ("4.2-beta2", "4.2-beta1", 1),
        ("4.2-beta", "4.2-beta.2", -1),
        ("4.2-beta", "4.2-beta.foo", -1),
        ("4.2-beta.2", "4.2-beta", 1),
        ("4.2-beta.foo", "4.2-beta", 1),
        ("1.2+bar", "1.2+baz", 0),
        ("1.0.0-beta.4", "1.0.0-beta.-2", -1),
        ("1.0.0-beta.-2", "1.0.0-beta.-3", -1),
        ("1.0.0-beta.-3", "1.0.0-beta.5", 1),
        # `v` prefix and missing parts do not change precedence
        ("v1.2.0", "1.2", 0),
        # numeric pre-release identifiers compare as numbers, others as ASCII (#626)
        ("1.0.0-rc.10", "1.0.0-rc.9", 1),
        ("1.0.0-rc10", "1.0.0-rc9", -1),
    ],
)
def test_precedence(left: str, right: str, expected: int) -> None:
    a, b = Version.parse(left), Version.parse(right)
    assert a is not None and b is not None
    assert ((a > b) - (a < b), a == b) == (expected, expected == 0)


def test_semver_org_precedence_chain() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ]
    parsed = [v for tag in chain if (v := Version.parse(tag)) is not None]
    assert len(parsed) == len(chain)
    assert [v.original for v in sorted(reversed(parsed))] == chain


# constraints_test.go@v3.4.0 TestConstraintsCheck, complete.
CONSTRAINTS_CHECK = [
    ("*", "1.2.3", True),
    ("~0.0.0", "1.2.3", True),
    ("0.x.x", "1.2.3", False),
    ("0.0.x", "1.2.3", False),
    ("0.0.0", "1.2.3", False),
    ("^0.0.0", "1.2.3", False),
    ("= 2.0", "1.2.3", False),
    ("= 2.0", "2.0.0", True),
    ("4.1", "4.1.0", True),
    ("4.1.x", "4.1.3", True),
    ("1.x", "1.4", True),
    ("!=4.1", "4.1.0", False),
    ("!=4.1-alpha", "4.1.0-alpha", False),
    ("!=4.1-alpha", "4.1.1-alpha", False),
    ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1", "5.1.0", True),
    ("!=4.x", "5.1.0", True),
    ("!=4.x", "4.1.0", False),
    ("!=4.1.x", "4.2.0", True),
    ("!=4.2.x", "4.2.3", False),
    (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False),
    ("<1.1", "0.1.0", True),
    ("<1.1", "1.1.0", False),
    ("<1.1", "1.1.1", False),
    ("<1.x", "1.1.1", False),
    ("<1.x", "0.1.1", True),
    ("<1.x", "2.0.0", False),
    ("<1.1.x", "1.2.1", False),
    ("<1.1.x", "1.1.500", False),
    ("<1.1.x", "1.0.500", True),
    ("<1.2.x", "1.1.1", True),
    (">=1.1", "4.1.0", True),
    (">=1.1", "4.1.0-beta", False),
    (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False),
    ("<=1.1", "0.1.0", True),
    ("<=1.1", "0.1.0-alpha", False),
    ("<=1.1-a", "0.1.0-alpha", True),
    ("<=1.1", "1.1.0", True),
    ("<=1.x", "1.1.0", True),
    ("<=2.x", "3.0.0", False),
    ("<=1.1", "1.1.1", True),
    ("<=1.1.x", "1.2.500", False),
    ("<=4.5", "3.4.0", True),
    ("<=4.5", "3.7.0", True),
    ("<=4.5", "4.6.3", False),
    (">1.1, <2", "1.1.1", False),
    (">1.1, <2", "1.2.1", True),
    (">1.1, <3", "4.3.2", False),
    (">=1.1, <2, !=1.2.3", "1.2.3", False),
    (">1.1 <2", "1.1.1", False),
    (">1.1 <2", "1.2.1", True),
    (">1.1    <3", "4.3.2", False),
    (">=1.1    <2    !=1.2.3", "1.2.3", False),
    (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", False),
    (">=1.1 <2 !=1.2.3", "1.2.3", False),
    (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", True),
    (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1 <2 !=1.2.3 || >= 3", "3.0.0", True),
    (">=1.1 <2 !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1 <2 !=1.2.3 || > 3", "1.2.3", False),
    ("> 1.1, <     2", "1.1.1", False),
    (">   1.1, <2", "1.2.1", True),
    (">1.1, <  3", "4.3.2", False),
    (">= 1.1, <     2, !=1.2.3", "1.2.3", False),
    ("> 1.1 < 2", "1.1.1", False),
    (">1.1 < 2", "1.2.1", True),
    ("> 1.1    <3", "4.3.2", False),
    (">=1.1    < 2    != 1.2.3", "1.2.3", False),
    (">= 1.1, <2, !=1.2.3 || > 3", "4.1.2", True),
    (">= 1.1, <2, != 1.2.3 || > 3", "3.1.2", False),
    (">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", True),
    (">= 1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">= 1.1, <2, !=1.2.3 || > 3", "1.2.3", False),
    (">= 1.1 <2 != 1.2.3", "1.2.3", False),
    (">= 1.1 <2 != 1.2.3 || > 3", "4.1.2", True),
    (">= 1.1 <2 != 1.2.3 || > 3", "3.1.2", False),
    (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", True),
    (">= 1.1 < 2 !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", False),
    (">= 1.0.0  <= 2.0.0-beta", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta", "1.0.1", True),
    (">= 1.0.0  <= 2.0.0-beta", "3.0.0", False),
    (">= 1.0.0  <= 2.0.0-beta || > 3", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta || > 3", "3.0.1-beta", False),
    (">= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3", "1.0.1-beta", True),
    (">= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3", "1.0.1-beta", False),
    (">= 1.0.0-0  <= 2.0.0", "1.0.1-beta", True),
    ("1.1 - 2", "1.1.1", True),
    ("1.5.0 - 4.5", "3.7.0", True),
    ("1.1-3", "4.3.2", False),
    ("^1.1", "1.1.1", True),
    ("^1.1", "4.3.2", False),
    ("^1.x", "1.1.1", True),
    ("^2.x", "1.1.1", False),
    ("^1.x", "2.1.1", False),
    ("^1.x", "1.1.1-beta1", False),
    ("^1.1.2-alpha", "1.2.1-beta1", True),
    ("^1.2.x-alpha", "1.1.1-beta1", False),
    ("^0.0.1", "0.0.1", True),
    ("^0.0.1", "0.3.1", False),
    ("~*", "2.1.1", True),
    ("~1", "2.1.1", False),
    ("~1", "1.3.5", True),
    ("~1", "1.4", True),
    ("~1.x", "2.1.1", False),
    ("~1.x", "1.3.5", True),
    ("~1.x", "1.4", True),
    ("~1.1", "1.1.1", True),
    ("~1.1", "1.1.1-alpha", False),
    ("~1.1-alpha", "1.1.1-beta", True),
    ("~1.1.1-beta", "1.1.1-alpha", False),
    ("~1.1.1-beta", "1.1.1", True),
    ("~1.2.3", "1.2.5", True),
    ("~1.2.3", "1.2.2", False),
    ("~1.2.3", "1.3.2", False),
    ("~1.1", "1.2.3", False),
    ("~1.3", "2.4.5", False),
    ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", True),
    ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", True),
]

# Image Updater's documented constraints (docs/configuration/images.md, update-strategies.md)
# and Masterminds' README forms.
IMAGE_UPDATER_CHECK = [
    ("~1.26", "1.26.3", True),
    ("~1.26", "1.27.0", False),
    ("~1.26", "1.26.0-rc.1", False),
    ("1.2.x", "1.2.5", True),
    ("1.2.x", "1.2.12", True),
    ("1.2.x", "1.3.0", False),
    ("1.x", "1.15.2", True),
    ("1.x", "2.0", False),
    ("2.x-0", "2.0.0-rc1", True),
    ("2.x-0", "2.1.0", True),
    ("2.x-0", "3.0.0-rc1", False),
    ("2.x", "2.0.0-rc1", False),
    ("v1.x", "1.0", True),  # "a constraint of v1.x would match a tag 1.0"
    ("1.x", "v1.0", True),  # "and a constraint of 1.x also matches a tag v1.0"
    (">=1.2 <2", "1.9.9", True),
    (">=1.2 <2", "2.0.0", False),
    (">=1.2 <2", "1.1.9", False),
    (">=1.2.3-0", "1.2.3-alpha", True),
    (">=1.2.3-0", "1.2.2", False),
    ("1.x || >=3.1", "3.2.0", True),
    ("1.x || >=3.1", "2.5.0", False),
    ("^1.2", "1.9.0", True),
    ("^1.2", "2.0.0", False),
    ("^1.2.3", "1.2.2", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("~1", "1.99.0", True),
    ("~1", "2.0.0", False),
    ("1.2 - 1.4.5", "1.4.5", True),
    ("1.2 - 1.4.5", "1.4.6", False),
    ("1.2 - 1.4.5", "1.1.9", False),
    ("1.2.*", "1.2.7", True),
    ("*", "20240101", True),  # numeric-only tags are major versions
    (">=1.0", "20240101", True),
    ("<1000", "20240101", False),
    ("*", "1.0.0-rc.1", False),
    ("", "1.0.0-rc.1", False),  # empty means `*`: no pre-releases (Image Updater v1.3)
    ("", "1.0.0", True),
]


@pytest.mark.parametrize(("constraint", "tag", "expected"), CONSTRAINTS_CHECK + IMAGE_UPDATER_CHECK)
def test_constraint_check(constraint: str, tag: str, expected: bool) -> None:
    version = Version.parse(tag)
    assert version is not None
    assert Constraint.parse(constraint).check(version) is expected


# constraints_test.go@v3.4.0 TestNewConstraint: (text, OR groups, comparators in the first group).
@pytest.mark.parametrize(
    ("text", "ors", "count"),
    [
        (">= 1.1", 1, 1),
        (">40.50.60, < 50.70", 1, 2),
        ("2.0", 1, 1),
        ("v2.3.5-20161202202307-sha.e8fc5e5", 1, 1),
        (">= 1.2.3 < 2.0", 1, 2),
        (">= 1.2.3 < 2.0 || => 3.0 < 4", 2, 2),
        (">= 1.2.3, < 2.0", 1, 2),
        (">= 1.2.3, < 2.0 || => 3.0, < 4", 2, 2),
        ("3 - 4 || => 3.0, < 4", 2, 2),
        ("12.3.34 ~1.2.3", 1, 2),
        ("1.0.0 - 2.0.0, <=2.0.0", 1, 3),
    ],
)
def test_constraint_structure(text: str, ors: int, count: int) -> None:
    constraint = Constraint.parse(text)
    assert (len(constraint.groups), len(constraint.groups[0])) == (ors, count)


@pytest.mark.parametrize(
    "text",
    [
        ">= bar",
        "BAR >= 1.2.3",
        "12.3.4.1234",
        "12.23.4.1234",
        "12.3.34~ 1.2.3",
        "1.2 ||",
        ">=1.0 <2 ! 3",
        "1x.2",
        "latest",
        "pr-42",
        ">=" + "1 " * 600,  # longer than the limit
    ],
)
def test_constraint_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid version constraint"):
        Constraint.parse(text)


def test_constraint_error_tells_how_to_write_one() -> None:
    with pytest.raises(ValueError) as caught:
        Constraint.parse(">=1.0 || k8s-dev-*")
    message = str(caught.value)
    assert "'k8s-dev-*'" in message
    assert "'>=1.2 <2'" in message and "'2.x-0'" in message


def test_many_separators_do_not_backtrack_exponentially() -> None:
    # Python's backtracking engine on upstream's regex would take ages here; RE2 does not.
    with pytest.raises(ValueError):
        Constraint.parse(">=1  " * 150 + "!")
    version = Version.parse("1.5")
    assert version is not None
    assert Constraint.parse(">=1 ,  " * 140 + "<2").check(version)
