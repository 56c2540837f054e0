"""Image Updater v0.18 annotation grammar and tag selection, from its documented examples."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cmp.errors import ConfigError
from cmp.imageupdater.annotations import (
    PREFIX,
    Candidate,
    ImagePolicy,
    merge_sources,
    normalize_repository,
    parse_policies,
)

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def policies(
    annotations: Mapping[str, str], parameter: Mapping[str, str] | None = None
) -> tuple[ImagePolicy, ...]:
    """Policies from unprefixed annotation keys, the way users write them after the prefix."""
    prefixed = {PREFIX + key: value for key, value in annotations.items()}
    return parse_policies(merge_sources(prefixed, parameter or {}))


def only(annotations: Mapping[str, str], parameter: Mapping[str, str] | None = None) -> ImagePolicy:
    (policy,) = policies(annotations, parameter)
    return policy


def tags(*names: str) -> list[Candidate]:
    return [
        Candidate(tag=name, digest=f"sha256:{i:064x}", pushed_at=None)
        for i, name in enumerate(names)
    ]


def chosen(policy: ImagePolicy, candidates: list[Candidate]) -> str | None:
    winner = policy.select(candidates)
    return winner.tag if winner else None


# --- merge_sources --------------------------------------------------------------------------


def test_merge_strips_the_prefix_and_ignores_other_annotations() -> None:
    merged = merge_sources(
        {
            PREFIX + "image-list": "web=nginx",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "image-list": "not ours",
        },
        {},
    )
    assert merged == {"image-list": ("web=nginx", "annotation")}


def test_merge_lets_the_parameter_win_per_key() -> None:
    merged = merge_sources(
        {PREFIX + "image-list": "web=nginx", PREFIX + "web.update-strategy": "semver"},
        {"web.update-strategy": "newest-build"},
    )
    assert merged == {
        "image-list": ("web=nginx", "annotation"),
        "web.update-strategy": ("newest-build", "parameter"),
    }


# --- image-list grammar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_list", "expected"),
    [
        ("nginx", [(None, "nginx", "")]),
        ("nginx:~1.26", [(None, "nginx", "~1.26")]),
        ("some/image:1.2.x", [(None, "some/image", "1.2.x")]),
        ("some/image:2.x-0", [(None, "some/image", "2.x-0")]),
        ("myalias=some/image", [("myalias", "some/image", "")]),
        ("fooalias=yourorg/yourimage:latest", [("fooalias", "yourorg/yourimage", "latest")]),
        (f"web={ECR}/web:>=1.2 <2", [("web", f"{ECR}/web", ">=1.2 <2")]),
        (f"web={ECR}/web:1.x || 3.x", [("web", f"{ECR}/web", "1.x || 3.x")]),
        (
            "argoproj/argocd=quay.io/argoproj/argocd",
            [("argoproj/argocd", "quay.io/argoproj/argocd", "")],
        ),
        ("localhost:5000/web:1.x", [(None, "localhost:5000/web", "1.x")]),
        ("web=nginx@sha256:" + "a" * 64, [("web", "nginx", "")]),
        (
            "fooalias=foo/bar, baralias=bar/foo",
            [("fooalias", "foo/bar", ""), ("baralias", "bar/foo", "")],
        ),
        ("  a=x/y:1.x ,b=z ,", [("a", "x/y", "1.x"), ("b", "z", "")]),
        # v1.x trims around the `=`, and an empty alias is no alias.
        ("web = some/image:1.x", [("web", "some/image", "1.x")]),
        ("=some/image", [(None, "some/image", "")]),
        ("", []),
    ],
)
def test_image_list_entries(image_list: str, expected: list[tuple[str | None, str, str]]) -> None:
    parsed = policies({"image-list": image_list})
    assert [(p.alias, p.image, p.constraint) for p in parsed] == expected


@pytest.mark.parametrize("image_list", ["web=", "web= ", "api=x/api, web =  "])
def test_an_alias_without_an_image_is_an_error(image_list: str) -> None:
    with pytest.raises(ConfigError, match="has an alias but no image"):
        policies({"image-list": image_list})


def test_no_image_list_means_no_policies() -> None:
    assert policies({"web.update-strategy": "digest"}) == ()


def test_equals_in_a_constraint_without_alias_is_reported() -> None:
    # v0.18 splits on the first '=', so `nginx:>=1.0` gets the alias `nginx:>`.
    policy = only({"image-list": "nginx:>=1.0"})
    assert policy.alias == "nginx:>"
    assert any("put an alias first" in p for p in policy.problems)


# --- update-strategy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "strategy", "warned"),
    [
        ("semver", "semver", False),
        ("SemVer", "semver", False),
        ("newest-build", "newest-build", False),
        ("latest", "newest-build", True),
        ("alphabetical", "alphabetical", False),
        ("NAME", "alphabetical", True),
        ("digest", "digest", False),
        ("", "semver", False),
        (" digest ", "digest", False),  # trimmed, as Image Updater v1.x does
    ],
)
def test_update_strategy_values(value: str, strategy: str, warned: bool) -> None:
    policy = only({"image-list": "web=some/image:main", "web.update-strategy": value})
    assert policy.strategy == strategy
    assert any("update-strategy" in p for p in policy.problems) is warned


@pytest.mark.parametrize("value", ["newest", "semver2", "latest-build"])
def test_unknown_update_strategy_is_an_error_naming_the_choices(value: str) -> None:
    # Image Updater would fall back to semver: on a branch's tags, the highest release.
    with pytest.raises(ConfigError) as caught:
        policies({"image-list": "web=some/image", "web.update-strategy": value})
    assert f"unknown update-strategy {value!r}" in str(caught.value)
    assert "semver, newest-build, alphabetical, digest" in str(caught.value)


def test_missing_update_strategy_is_semver() -> None:
    assert only({"image-list": "web=some/image"}).strategy == "semver"


# --- precedence -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "strategy"),
    [
        ({"web.update-strategy": "digest", "update-strategy": "alphabetical"}, "digest"),
        ({"update-strategy": "alphabetical"}, "alphabetical"),
        # v0.18: a per-alias key that is present but empty still wins, and means semver.
        ({"web.update-strategy": "", "update-strategy": "alphabetical"}, "semver"),
        ({"api.update-strategy": "digest", "update-strategy": "alphabetical"}, "alphabetical"),
    ],
)
def test_alias_key_first_then_app_wide(annotations: dict[str, str], strategy: str) -> None:
    policy = only({"image-list": "web=some/image:main", **annotations})
    assert policy.strategy == strategy


def test_image_without_alias_reads_only_app_wide_keys() -> None:
    policy = only({"image-list": "some/image", "update-strategy": "alphabetical"})
    assert policy.strategy == "alphabetical"


def test_present_but_empty_alias_allow_tags_means_any() -> None:
    policy = only({"image-list": "web=some/image", "web.allow-tags": "", "allow-tags": "regexp:^v"})
    assert policy.allow_tags is None
    assert policy.allows("1.0.0")


def test_slash_in_alias_is_spelled_underscore_in_keys() -> None:
    annotations = {
        "image-list": "argoproj/argocd=quay.io/argoproj/argocd",
        "argoproj_argocd.update-strategy": "alphabetical",
        "argoproj/argocd.allow-tags": "regexp:^never$",
    }
    policy = only(annotations)
    assert policy.strategy == "alphabetical"
    assert policy.allow_tags is None


@pytest.mark.parametrize(
    ("parameter", "strategy", "source"),
    [
        ({}, "alphabetical", "annotation"),
        ({"web.update-strategy": "newest-build"}, "newest-build", "parameter"),
        ({"update-strategy": "digest"}, "alphabetical", "annotation"),  # alias key still wins
        ({"web.ignore-tags": "latest"}, "alphabetical", "parameter"),
        ({"image-list": "web=some/image:main"}, "alphabetical", "parameter"),
    ],
)
def test_parameter_beats_annotation(parameter: dict[str, str], strategy: str, source: str) -> None:
    annotations = {"image-list": "web=some/image", "web.update-strategy": "alphabetical"}
    policy = only(annotations, parameter)
    assert (policy.strategy, policy.source) == (strategy, source)


# --- allow-tags and ignore-tags ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow_tags", "tag", "allowed", "problem"),
    [
        ("regexp:^[0-9a-f]{7}$", "a5fb3d3", True, False),
        ("regexp:^[0-9a-f]{7}$", "latest", False, False),
        ("regexp:^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "2024-05-01", True, False),
        ("regexp:^v1.0.0-[0-9a-zA-Z]+$", "v1.0.0-abc12", True, False),
        ("regexp:pr-42-", "build-pr-42-1700000000", True, False),  # unanchored search
        ("regexp:^pr-42-", "pr-420-1700000000", False, False),
        ("REGEXP:^pr-42-", "pr-42-1700000000", True, False),
        ("regexp:^(?:a|b):x$", "a:x", True, False),  # only the first ':' splits
        ("regexp:^[[:digit:]]+$", "20240101", True, False),  # RE2's POSIX classes
        ("regexp:^[[:digit:]]+$", "2024-01", False, False),
        ("any", "whatever", True, False),
        ("ANY", "whatever", True, False),
        ("^1.19", "1.19.0", False, True),  # no prefix: matches nothing (#505)
        ("glob:pr-*", "pr-1", False, True),  # unknown function
        ("regexp:^(pr-[0-9]+$", "pr-1", False, True),  # does not compile
        ("regexp:^(?=pr)", "pr-1", False, True),  # lookahead: RE2 rejects it, so must we
        ("regexp:^(pr)-\\1$", "pr-pr", False, True),  # backreference, likewise
    ],
)
def test_allow_tags(allow_tags: str, tag: str, allowed: bool, problem: bool) -> None:
    policy = only(
        {
            "image-list": "web=some/image",
            "web.update-strategy": "newest-build",
            "web.allow-tags": allow_tags,
        }
    )
    assert policy.allows(tag) is allowed
    assert bool(policy.problems) is problem


def test_app_wide_allow_tags_applies_without_alias_key() -> None:
    policy = only(
        {"image-list": "web=some/image", "update-strategy": "name", "allow-tags": "regexp:^pr-"}
    )
    assert chosen(policy, tags("pr-1", "zzz")) == "pr-1"


def test_deprecated_tag_match_is_used_when_allow_tags_is_missing() -> None:
    policy = only(
        {
            "image-list": "web=some/image",
            "web.update-strategy": "name",
            "web.tag-match": "regexp:^a",
        }
    )
    assert chosen(policy, tags("a1", "b1")) == "a1"
    assert any("deprecated" in p for p in policy.problems)


@pytest.mark.parametrize(
    ("ignore_tags", "tag", "ignored"),
    [
        ("latest, master", "latest", True),
        ("latest, master", "master", True),
        ("latest, master", "main", False),
        ("*", "anything", True),  # the documented way to pause updates
        ("pr-*", "pr-42-abc", True),
        ("pr-?", "pr-4", True),
        ("pr-?", "pr-42", False),
        ("v[0-9].*", "v1.2", True),
        ("v[^0-9]*", "vx", True),
        ("v[^0-9]*", "v1", False),
        ("dev\\*", "dev*", True),
        ("dev\\*", "dev1", False),
        ("release-[", "release-[", False),  # malformed glob ignores nothing, as in Go
        ("feature*", "feature/x", False),  # Go's `*` stops at '/' (no real tag has one)
        (",, latest ,", "latest", True),  # empty entries dropped
        ("", "latest", False),
    ],
)
def test_ignore_tags(ignore_tags: str, tag: str, ignored: bool) -> None:
    policy = only(
        {
            "image-list": "web=some/image",
            "web.update-strategy": "alphabetical",
            "web.ignore-tags": ignore_tags,
        }
    )
    assert policy.allows(tag) is not ignored


def test_ignore_tags_are_trimmed_and_reported_when_malformed() -> None:
    policy = only({"image-list": "web=some/image", "ignore-tags": " a* , ,[b "})
    assert policy.ignore_tags == ("a*", "[b")
    assert any("'[b'" in p for p in policy.problems)


# --- strategies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "available", "winner"),
    [
        ("", ["1.0.0", "1.2.0", "1.10.0", "1.9.9", "latest", "main-abc"], "1.10.0"),
        ("", ["1.0.0", "2.0.0-rc.1"], "1.0.0"),  # no pre-releases without `-0`
        ("2.x-0", ["1.0.0", "2.0.0-rc.1"], "2.0.0-rc.1"),
        ("~1.26", ["1.25.9", "1.26.1", "1.26.12", "1.27.0"], "1.26.12"),
        ("1.2.x", ["1.2.5", "1.2.12", "1.3.0"], "1.2.12"),
        ("1.x", ["1.2.12", "1.15.2", "2.0"], "1.15.2"),
        (">=1.2 <2", ["1.1.0", "1.5.0", "2.0.0"], "1.5.0"),
        ("1.x || 3.x", ["1.4.0", "2.0.0", "3.1.0", "4.0.0"], "3.1.0"),
        ("^1.2", ["1.1.0", "1.9.3", "2.0.0"], "1.9.3"),
        ("~1", ["1.0.0", "1.99.0", "2.0.0"], "1.99.0"),
        ("v1.x", ["1.0", "1.1"], "1.1"),
        ("", ["v1.2.0", "1.2", "1.2.0"], "v1.2.0"),  # tie: lexically largest original
        ("", ["1.2.0", "1.2"], "1.2.0"),
        ("", ["20240101", "20231231", "1.0.0"], "20240101"),  # numeric-only tags are semver
        ("<=5", ["20240101", "3.0.0"], "3.0.0"),
        ("~9", ["1.0.0"], None),
    ],
)
def test_semver_selection(constraint: str, available: list[str], winner: str | None) -> None:
    image = "web=some/image" + (f":{constraint}" if constraint else "")
    assert chosen(only({"image-list": image}), tags(*available)) == winner


def test_semver_with_invalid_constraint_selects_nothing_and_says_why() -> None:
    policy = only({"image-list": "web=some/image:k8s-dev-*"})
    assert chosen(policy, tags("1.0.0", "k8s-dev-1")) is None
    assert any("invalid version constraint" in p for p in policy.problems)


def test_newest_build_prefers_latest_push_then_larger_tag() -> None:
    policy = only({"image-list": "web=some/image", "web.update-strategy": "newest-build"})
    candidates = [
        Candidate("f33bacd", "sha256:1", 1_700_000_100.0),
        Candidate("dev", "sha256:1", 1_700_000_100.0),
        Candidate("latest", "sha256:1", 1_700_000_100.0),  # same push: larger name wins
        Candidate("zzz-old", "sha256:0", 1_700_000_000.0),
        Candidate("unknown", "sha256:2", None),  # no push time never beats a known one
    ]
    assert chosen(policy, candidates) == "latest"
    assert chosen(policy, [Candidate("a", "d", None), Candidate("b", "d", None)]) == "b"


def test_newest_build_ignores_the_constraint_and_says_so() -> None:
    # Issue #1100: `:k8s-dev-*` with newest-build still picks k8s-main-* tags.
    policy = only({"image-list": "web=org/image:k8s-dev-*", "web.update-strategy": "newest-build"})
    candidates = [
        Candidate("k8s-dev-1", "d", 1.0),
        Candidate("k8s-main-2", "d", 2.0),
    ]
    assert chosen(policy, candidates) == "k8s-main-2"
    assert any("has no effect" in p for p in policy.problems)


@pytest.mark.parametrize(
    ("available", "winner"),
    [
        (["9", "10"], "9"),  # byte-wise, not numeric
        (["2024-01-31", "2024-02-01", "2023-12-31"], "2024-02-01"),
        (["pr-42-1700000000-abc1234", "pr-42-1700000500-def5678"], "pr-42-1700000500-def5678"),
        (["Zeta", "alpha"], "alpha"),  # upper case sorts before lower case
    ],
)
def test_alphabetical_selection(available: list[str], winner: str) -> None:
    policy = only({"image-list": "web=some/image", "web.update-strategy": "alphabetical"})
    assert chosen(policy, tags(*available)) == winner


def test_digest_follows_the_constraint_tag() -> None:
    policy = only({"image-list": "web=some/image:main", "web.update-strategy": "digest"})
    assert chosen(policy, tags("1.0.0", "main", "main-old", "zzz")) == "main"
    assert chosen(policy, tags("1.0.0")) is None
    assert policy.problems == ()


def test_digest_without_constraint_matches_nothing_and_says_why() -> None:
    policy = only({"image-list": "web=some/image", "web.update-strategy": "digest"})
    assert chosen(policy, tags("main", "latest")) is None
    assert any("needs the tag to follow" in p for p in policy.problems)


def test_filters_apply_before_the_strategy() -> None:
    policy = only(
        {
            "image-list": "web=some/image:main",
            "web.update-strategy": "digest",
            "web.ignore-tags": "main",
        }
    )
    assert chosen(policy, tags("main")) is None


def test_select_on_no_candidates_is_none() -> None:
    assert only({"image-list": "web=some/image"}).select([]) is None


# --- repository matching and description --------------------------------------------------


@pytest.mark.parametrize(
    ("image", "repository", "matches"),
    [
        (f"{ECR}/web", f"{ECR}/web", True),
        (f"{ECR}/web", f"{ECR}/web:pr-42", True),
        (f"{ECR}/web", f"{ECR}/web:pr-42@sha256:" + "b" * 64, True),
        (f"{ECR}/web", f"{ECR}/web-api", False),
        (f"{ECR}/web", "web", False),
        ("nginx", "docker.io/library/nginx", True),
        ("nginx", "docker.io/library/nginx:1.27", True),
        ("docker.io/nginx", "nginx", True),
        ("bitnami/nginx", "docker.io/bitnami/nginx", True),
        ("bitnami/nginx", "nginx", False),
        ("localhost:5000/web", "localhost:5000/web:1.0", True),
    ],
)
def test_matches_repository(image: str, repository: str, matches: bool) -> None:
    assert only({"image-list": f"app={image}"}).matches_repository(repository) is matches


def test_normalize_repository() -> None:
    assert normalize_repository("nginx:1.27") == "docker.io/library/nginx"
    assert normalize_repository(f"{ECR}/team/web:tag") == f"{ECR}/team/web"


def test_describe_names_what_governs_the_image() -> None:
    policy = only(
        {
            "image-list": f"web={ECR}/web",
            "web.update-strategy": "newest-build",
            "web.allow-tags": "regexp:^pr-42-",
        }
    )
    assert policy.describe() == (
        "alias web, strategy newest-build, allow-tags regexp:^pr-42-, from annotation"
    )
    bare = only({"image-list": "nginx:~1.26", "ignore-tags": "a,b"}, {"update-strategy": "semver"})
    assert bare.describe() == (
        "image nginx, strategy semver, constraint ~1.26, ignore-tags a,b, from parameter"
    )
