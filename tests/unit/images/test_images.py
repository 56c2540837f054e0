"""Image references, ECR hosts and the image finder: the grammar tables users rely on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmp.errors import ConfigError, ImageError
from cmp.images.fields import (
    ImageField,
    ImagePath,
    Wildcard,
    find_images,
    format_field_path,
    parse_field_path,
    parse_image_paths,
    set_image,
)
from cmp.images.reference import ImageRef, parse_image, reference_pattern
from cmp.registry.names import EcrRegistry, ecr_registry, ecr_repository
from cmp.source.manifests import Manifest

D = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "ab" * 64
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

# --- references ------------------------------------------------------------------------------

VALID = [
    # text, domain, path, tag, digest, normalized name
    ("nginx", "", "nginx", None, None, "docker.io/library/nginx"),
    ("nginx:1.25", "", "nginx", "1.25", None, "docker.io/library/nginx"),
    ("library/nginx", "", "library/nginx", None, None, "docker.io/library/nginx"),
    ("bitnami/redis:7.2", "", "bitnami/redis", "7.2", None, "docker.io/bitnami/redis"),
    ("docker.io/nginx", "docker.io", "nginx", None, None, "docker.io/library/nginx"),
    (
        "docker.io/bitnami/redis",
        "docker.io",
        "bitnami/redis",
        None,
        None,
        "docker.io/bitnami/redis",
    ),
    (
        "index.docker.io/library/nginx:latest",
        "index.docker.io",
        "library/nginx",
        "latest",
        None,
        "docker.io/library/nginx",
    ),
    (
        "registry.example.com:5000/team/web:v1",
        "registry.example.com:5000",
        "team/web",
        "v1",
        None,
        "registry.example.com:5000/team/web",
    ),
    ("localhost:5000/x", "localhost:5000", "x", None, None, "localhost:5000/x"),
    ("localhost/x", "localhost", "x", None, None, "localhost/x"),
    # distribution reads a lone "localhost:5000" as repository "localhost", tag "5000".
    ("localhost:5000", "", "localhost", "5000", None, "docker.io/library/localhost"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None, None, "127.0.0.1:5000/a/b"),
    ("[::1]:5000/x", "[::1]:5000", "x", None, None, "[::1]:5000/x"),
    ("[2001:db8::1]/repo:v2", "[2001:db8::1]", "repo", "v2", None, "[2001:db8::1]/repo"),
    (
        "ghcr.io/org/team/sub/app:sha-abc123",
        "ghcr.io",
        "org/team/sub/app",
        "sha-abc123",
        None,
        "ghcr.io/org/team/sub/app",
    ),
    (f"name@{D}", "", "name", None, D, "docker.io/library/name"),
    (f"name:tag@{D}", "", "name", "tag", D, "docker.io/library/name"),
    (f"{ECR}/team/web:v1@{D}", ECR, "team/web", "v1", D, f"{ECR}/team/web"),
    (f"quay.io/app@{D512}", "quay.io", "app", None, D512, "quay.io/app"),
    (
        "a__b/c--d/e.f_g:V1_x.y-Z",
        "",
        "a__b/c--d/e.f_g",
        "V1_x.y-Z",
        None,
        "docker.io/a__b/c--d/e.f_g",
    ),
    # splitDockerDomain treats an uppercase first component as a host, as Docker does.
    ("Uppercase/lowercase:tag", "Uppercase", "lowercase", "tag", None, "Uppercase/lowercase"),
    (
        "sub-dom1.foo.com/bar/baz/quux",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        None,
        None,
        "sub-dom1.foo.com/bar/baz/quux",
    ),
    ("x:" + "t" * 128, "", "x", "t" * 128, None, "docker.io/library/x"),
    ("example.com/" + "a" * 255, "example.com", "a" * 255, None, None, "example.com/" + "a" * 255),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "normalized"), VALID)
def test_parse_valid_reference(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, normalized: str
) -> None:
    ref = parse_image(text)
    assert ref == ImageRef(domain=domain, path=path, tag=tag, digest=digest)
    assert ref.normalized_name == normalized
    assert ref.repository == (f"{domain}/{path}" if domain else path)
    assert ref.pinned is (digest is not None)


@pytest.mark.parametrize("text", [row[0] for row in VALID])
def test_reference_round_trips_exactly_as_written(text: str) -> None:
    ref = parse_image(text)
    assert str(ref) == text
    assert parse_image(str(ref)) == ref


INVALID = [
    ("", "is empty"),
    (" nginx", "contains whitespace"),
    ("nginx:1.25\n", "contains whitespace"),
    ("Nginx", 'uppercase letters in the repository path "Nginx"'),
    ("test:5000/Uppercase/lowercase:tag", 'uppercase letters in the repository path "Uppercase/'),
    ("nginx:", "empty tag"),
    ("nginx:-1", 'invalid tag "-1"'),
    ("nginx:.hidden", 'invalid tag ".hidden"'),
    ("nginx:" + "a" * 129, "tag 129 characters long"),
    ("nginx:v1+build", 'invalid tag "v1+build"'),
    ("nginx@sha256:abc", 'invalid digest "sha256:abc"'),
    ("nginx@", 'invalid digest ""'),
    ("nginx@sha256:" + "a" * 63, "sha256 digest of 63 hex digits: it must have 64"),
    ("nginx@sha256:" + "A" * 64, "uppercase hex digits"),
    ("nginx@md5:" + "a" * 32, 'unsupported digest algorithm "md5"'),
    (f"nginx@{D}@{D}", "invalid digest"),
    (f"@{D}", "has no repository name"),
    (":justtag", "has no repository name"),
    ("aa/asdf$$^/aa", 'invalid repository path "aa/asdf$$^/aa"'),
    ("a//b", "invalid repository path"),
    ("-a", "invalid repository path"),
    ("team/web-", "invalid repository path"),
    ("a..b", "invalid repository path"),
    ("a___b", "invalid repository path"),
    ("bad_host.com/x", 'invalid registry host "bad_host.com"'),
    ("nginx:1.0/x", 'invalid registry host "nginx:1.0"'),
    ("[fe80::1%eth0]:5000/repo", "invalid registry host"),
    ("example.com/", "no repository path"),
    ("[2001:db8::1]", "no repository path"),
    ("[2001:db8::1]:5000", "no repository path"),
    ("example.com/" + "a" * 256, "repository path 256 characters long: the limit is 255"),
    ("0123456789abcdef" * 4, "64-hex-digit image ID"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_reference_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ImageError) as caught:
        parse_image(text)
    message = str(caught.value)
    assert fragment in message
    if text:
        assert message.startswith('image "')


def test_long_bad_reference_is_quoted_short() -> None:
    with pytest.raises(ImageError) as caught:
        parse_image("example.com/" + "a" * 5000)
    assert len(str(caught.value)) < 400


@given(st.text(alphabet="aZ09._-:/@[]", max_size=30))
def test_everything_accepted_matches_the_distribution_grammar(text: str) -> None:
    try:
        ref = parse_image(text)
    except ImageError:
        return
    assert reference_pattern().fullmatch(text)
    assert str(ref) == text


def test_with_pin_keeps_how_the_host_was_written() -> None:
    ref = parse_image("Registry.Example.com:5000/team/web:v1")
    pinned = ref.with_pin("v1", D)
    assert str(pinned) == f"Registry.Example.com:5000/team/web:v1@{D}"
    assert pinned.pinned
    assert str(parse_image("nginx").with_pin(None, D)) == f"nginx@{D}"
    assert parse_image(str(pinned)) == pinned


@pytest.mark.parametrize(
    ("tag", "digest", "fragment"),
    [("v1", "sha256:abc", "invalid digest"), ("-v1", D, 'invalid tag "-v1"')],
)
def test_with_pin_rejects_bad_pins(tag: str, digest: str, fragment: str) -> None:
    with pytest.raises(ImageError, match=fragment):
        parse_image("team/web").with_pin(tag, digest)


# --- ECR -------------------------------------------------------------------------------------

ECR_HOSTS = [
    # host, account, region, fips, dualstack
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012", "us-east-1", False, False),
    (
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        "123456789012",
        "us-gov-west-1",
        True,
        False,
    ),
    ("123456789012.dkr-ecr.us-west-2.on.aws", "123456789012", "us-west-2", False, True),
    ("123456789012.dkr-ecr-fips.us-gov-east-1.on.aws", "123456789012", "us-gov-east-1", True, True),
    (
        "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "210987654321",
        "cn-north-1",
        False,
        False,
    ),
    (
        "210987654321.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
        "210987654321",
        "cn-north-1",
        False,
        True,
    ),
    (
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
        "123456789012",
        "eusc-de-east-1",
        False,
        False,
    ),
    (
        "210987654321.dkr.ecr.us-iso-east-1.c2s.ic.gov",
        "210987654321",
        "us-iso-east-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
        "123456789012",
        "us-isob-east-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
        "123456789012",
        "eu-isoe-west-1",
        False,
        False,
    ),
    (
        "123456789012.dkr.ecr.us-isof-east-1.csp.hci.ic.gov",
        "123456789012",
        "us-isof-east-1",
        False,
        False,
    ),
]


@pytest.mark.parametrize(("host", "account", "region", "fips", "dualstack"), ECR_HOSTS)
def test_ecr_host_forms(host: str, account: str, region: str, fips: bool, dualstack: bool) -> None:
    expected = EcrRegistry(
        host=host, account=account, region=region, fips=fips, dualstack=dualstack
    )
    assert ecr_registry(host) == expected
    assert ecr_registry(f"{host}:443") == expected
    repository = ecr_repository(parse_image(f"{host}/team/web:v1"))
    assert repository is not None
    assert repository.registry == expected
    assert repository.name == "team/web"


@pytest.mark.parametrize(
    "domain",
    [
        "public.ecr.aws",
        "ecr-public.aws.com",
        "",
        "docker.io",
        "localhost:5000",
        "[::1]:5000",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "123456789012.dkr.ecr.us-east-1.amazonaws.org",
        "123456789012.ecr.us-east-1.amazonaws.com",
        "api.ecr.us-east-1.amazonaws.com",
    ],
)
def test_non_ecr_hosts(domain: str) -> None:
    assert ecr_registry(domain) is None


def test_ecr_public_image_is_not_resolved_as_private_ecr() -> None:
    assert ecr_repository(parse_image("public.ecr.aws/nginx/nginx:1.25")) is None
    assert ecr_repository(parse_image("nginx:1.25")) is None


def test_cross_account_images_name_their_own_registry() -> None:
    ours = ecr_repository(parse_image("111122223333.dkr.ecr.eu-west-1.amazonaws.com/web:v1"))
    theirs = ecr_repository(parse_image("444455556666.dkr.ecr.us-east-2.amazonaws.com/web:v1"))
    assert ours is not None and theirs is not None
    assert (ours.registry.account, ours.registry.region) == ("111122223333", "eu-west-1")
    assert (theirs.registry.account, theirs.registry.region) == ("444455556666", "us-east-2")
    assert ours != theirs


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("docker-hub/library/nginx", "docker-hub"),
        ("ecr-public/nginx/nginx", "ecr-public"),
        ("quay/prometheus/node-exporter", "quay"),
        ("k8s/pause", "k8s"),
        ("registry-k8s-io/coredns/coredns", "registry-k8s-io"),
        ("github/org/app", "github"),
        ("ghcr/org/app", "ghcr"),
        ("gitlab/group/app", "gitlab"),
        ("azure/app", "azure"),
        ("chainguard/static", "chainguard"),
        ("team/web", None),
        ("docker-hub", None),  # a repository that is merely called docker-hub
        ("web/docker-hub/nginx", None),
    ],
)
def test_pull_through_cache_prefix(path: str, prefix: str | None) -> None:
    repository = ecr_repository(parse_image(f"{ECR}/{path}:1"))
    assert repository is not None
    assert repository.pull_through_prefix == prefix


def test_pull_through_prefixes_are_configurable() -> None:
    mirror = frozenset({"mirror"})
    custom = ecr_repository(parse_image(f"{ECR}/mirror/library/nginx:1"), mirror)
    default_only = ecr_repository(parse_image(f"{ECR}/docker-hub/library/nginx:1"), mirror)
    assert custom is not None and default_only is not None
    assert custom.pull_through_prefix == "mirror"
    assert default_only.pull_through_prefix is None


# --- finding images ----------------------------------------------------------------------------


def nested(path: str, leaf: Any) -> dict[str, Any]:
    """{"a": {"b": leaf}} for "a.b"."""
    node: Any = leaf
    for key in reversed(path.split(".")):
        node = {key: node}
    return node


def workload(
    api_version: str, kind: str, pod_spec_path: str, pod_spec: dict[str, Any], name: str = "web"
) -> Manifest:
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    body.update(nested(pod_spec_path, pod_spec))
    return Manifest(body=body, source="templates/web.yaml", line=3)


POD_SPEC = {
    "initContainers": [{"name": "migrate", "image": "team/migrate:1"}],
    "containers": [{"name": "app", "image": "team/web:1"}, {"name": "proxy", "image": "envoy:2"}],
    "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
}

WORKLOADS = [
    ("v1", "Pod", "spec"),
    ("v1", "PodTemplate", "template.spec"),
    ("v1", "ReplicationController", "spec.template.spec"),
    ("apps/v1", "Deployment", "spec.template.spec"),
    ("apps/v1", "ReplicaSet", "spec.template.spec"),
    ("apps/v1", "StatefulSet", "spec.template.spec"),
    ("apps/v1", "DaemonSet", "spec.template.spec"),
    ("batch/v1", "Job", "spec.template.spec"),
    ("batch/v1", "CronJob", "spec.jobTemplate.spec.template.spec"),
    ("argoproj.io/v1alpha1", "Rollout", "spec.template.spec"),
]


@pytest.mark.parametrize(("api_version", "kind", "pod_spec_path"), WORKLOADS)
def test_finds_every_container_image_of_each_workload(
    api_version: str, kind: str, pod_spec_path: str
) -> None:
    manifest = workload(api_version, kind, pod_spec_path, POD_SPEC)
    found = find_images([manifest])
    prefix = tuple(pod_spec_path.split("."))
    assert [(field.path, field.value) for field in found] == [
        ((*prefix, "containers", 0, "image"), "team/web:1"),
        ((*prefix, "containers", 1, "image"), "envoy:2"),
        ((*prefix, "initContainers", 0, "image"), "team/migrate:1"),
        ((*prefix, "ephemeralContainers", 0, "image"), "busybox"),
    ]
    assert all(field.manifest is manifest for field in found)


@pytest.mark.parametrize(
    ("api_version", "kind", "pod_spec_path"),
    [
        ("example.com/v1", "Deployment", "spec.template.spec"),
        ("example.com/v1", "Pod", "spec"),
        ("apps/v1", "CronJob", "spec.jobTemplate.spec.template.spec"),
        ("example.com/v1", "Rollout", "spec.template.spec"),
        ("v1", "ConfigMap", "data"),
    ],
)
def test_same_named_kinds_in_other_groups_are_untouched(
    api_version: str, kind: str, pod_spec_path: str
) -> None:
    assert find_images([workload(api_version, kind, pod_spec_path, POD_SPEC)]) == []


def test_describe_names_object_file_line_and_field() -> None:
    found = find_images([workload("apps/v1", "Deployment", "spec.template.spec", POD_SPEC)])
    assert found[0].describe() == (
        "Deployment/web in templates/web.yaml:3 at spec.template.spec.containers[0].image"
    )


def test_results_follow_manifest_order() -> None:
    first = workload(
        "batch/v1", "Job", "spec.template.spec", {"containers": [{"image": "b:1"}]}, name="first"
    )
    second = workload("v1", "Pod", "spec", {"containers": [{"image": "a:1"}]}, name="second")
    assert [field.manifest.name for field in find_images([first, second])] == ["first", "second"]
    assert [field.manifest.name for field in find_images([second, first])] == ["second", "first"]


@pytest.mark.parametrize(
    "body",
    [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
        nested("spec.template", None) | {"apiVersion": "apps/v1", "kind": "Deployment"},
        nested("spec.template.spec.containers", "nope")
        | {"apiVersion": "apps/v1", "kind": "Deployment"},
        nested("spec.template.spec.containers", [{"name": "no-image"}, "junk", None])
        | {"apiVersion": "apps/v1", "kind": "Deployment"},
        nested("spec.template.spec.containers", [{"image": None}])
        | {"apiVersion": "apps/v1", "kind": "Deployment"},
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "spec": {"workloadRef": {"kind": "Deployment", "name": "web"}},
        },
    ],
)
def test_missing_or_partial_structure_is_skipped(body: dict[str, Any]) -> None:
    assert find_images([Manifest(body=body, source="a.yaml")]) == []


def test_non_string_images_are_all_reported_with_object_and_path() -> None:
    spec = {"containers": [{"image": 1.25}, {"image": {"repository": "web"}}]}
    manifest = workload("apps/v1", "Deployment", "spec.template.spec", spec)
    with pytest.raises(ImageError) as caught:
        find_images([manifest])
    assert caught.value.problems == (
        "Deployment/web in templates/web.yaml:3 at spec.template.spec.containers[0].image: "
        'the image must be a string, not a float ("1.25")',
        "Deployment/web in templates/web.yaml:3 at spec.template.spec.containers[1].image: "
        "the image must be a string, not a mapping (\"{'repository': 'web'}\")",
    )


def test_set_image_writes_back_into_the_manifest() -> None:
    manifest = workload("batch/v1", "CronJob", "spec.jobTemplate.spec.template.spec", POD_SPEC)
    field = find_images([manifest])[1]
    set_image(field, f"envoy:2@{D}")
    containers = manifest.body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers[1]["image"] == f"envoy:2@{D}"
    assert containers[0]["image"] == "team/web:1"
    assert [f.value for f in find_images([manifest])][1] == f"envoy:2@{D}"


def test_image_field_parse_errors_name_the_object() -> None:
    spec = {"containers": [{"image": "Team/Web:1"}]}
    field = find_images([workload("apps/v1", "Deployment", "spec.template.spec", spec)])[0]
    with pytest.raises(
        ImageError,
        match=r"^Deployment/web in templates/web.yaml:3 at .*\[0\]"
        r"\.image: image \"Team/Web:1\" has uppercase",
    ):
        field.parse()


# --- custom image paths ------------------------------------------------------------------------


def custom(kind: str, api_version: str, **body: Any) -> Manifest:
    return Manifest(
        body={"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **body},
        source="crd.yaml",
        line=7,
    )


def test_custom_rule_with_wildcard_and_group() -> None:
    workflow = custom(
        "Workflow",
        "argoproj.io/v1alpha1",
        spec={
            "templates": [
                {"name": "a", "container": {"image": "team/a:1"}},
                {"name": "b", "script": {"image": "python:3"}},
                {"name": "c", "container": {"image": "team/c:1"}},
            ]
        },
    )
    other_group = custom("Workflow", "example.com/v1", spec=workflow.body["spec"])
    rule = ImagePath("Workflow", "spec.templates[*].container.image", "argoproj.io")
    found = find_images([workflow, other_group], [rule])
    assert [(f.path, f.value) for f in found] == [
        (("spec", "templates", 0, "container", "image"), "team/a:1"),
        (("spec", "templates", 2, "container", "image"), "team/c:1"),
    ]
    assert found[1].describe() == "Workflow/x in crd.yaml:7 at spec.templates[2].container.image"


def test_custom_rule_with_index_picks_only_that_item() -> None:
    task = custom("Task", "tekton.dev/v1", spec={"steps": [{"image": "a:1"}, {"image": "b:1"}]})
    found = find_images([task], [ImagePath("Task", "spec.steps[0].image")])
    assert [f.value for f in found] == ["a:1"]
    assert find_images([task], [ImagePath("Task", "spec.steps[5].image")]) == []


def test_custom_rule_with_quoted_key_and_mapping_wildcard() -> None:
    app = custom(
        "App",
        "example.com/v1",
        metadata={"name": "x", "annotations": {"example.com/image": "team/web:1"}},
        spec={"images": {"web": "team/web:1", "worker": "team/worker:2"}},
    )
    rules = [
        ImagePath("App", 'metadata.annotations["example.com/image"]'),
        ImagePath("App", "spec.images[*]"),
    ]
    found = find_images([app], rules)
    assert [f.describe() for f in found] == [
        'App/x in crd.yaml:7 at metadata.annotations["example.com/image"]',
        "App/x in crd.yaml:7 at spec.images.web",
        "App/x in crd.yaml:7 at spec.images.worker",
    ]
    set_image(found[0], "team/web:2")
    assert app.body["metadata"]["annotations"]["example.com/image"] == "team/web:2"


def test_custom_rule_for_core_group_only() -> None:
    core = custom("Thing", "v1", spec={"image": "a:1"})
    grouped = custom("Thing", "example.com/v1", spec={"image": "b:1"})
    found = find_images([core, grouped], [ImagePath("Thing", "spec.image", api_group="")])
    assert [f.value for f in found] == ["a:1"]


def test_rule_repeating_a_builtin_does_not_duplicate_fields() -> None:
    manifest = workload("apps/v1", "Deployment", "spec.template.spec", POD_SPEC)
    rule = ImagePath("Deployment", "spec.template.spec.containers[*].image", "apps")
    assert find_images([manifest], [rule]) == find_images([manifest])


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        (
            "spec.template.spec.containers[*].image",
            ("spec", "template", "spec", "containers", Wildcard.ANY, "image"),
        ),
        ("spec.steps[0].image", ("spec", "steps", 0, "image")),
        (
            'metadata.annotations["example.com/image"]',
            ("metadata", "annotations", "example.com/image"),
        ),
        ("metadata.annotations['a.b']", ("metadata", "annotations", "a.b")),
        ('["a.b"].c', ("a.b", "c")),
        ('x["say \\"hi\\""]', ("x", 'say "hi"')),
        ("spec.matrix[*][1]", ("spec", "matrix", Wildcard.ANY, 1)),
        ("spec.$image_ref-x", ("spec", "$image_ref-x")),
    ],
)
def test_field_path_syntax(text: str, steps: tuple[object, ...]) -> None:
    assert parse_field_path(text) == steps
    assert parse_field_path(format_field_path(parse_field_path(text))) == steps


# --- tagpin.yaml images.paths ------------------------------------------------------------------


def test_parse_image_paths_accepts_rules() -> None:
    raw = [
        {"kind": "Workflow", "group": "argoproj.io", "path": "spec.templates[*].container.image"},
        {"kind": "Task", "path": "spec.steps[0].image"},
    ]
    assert parse_image_paths(raw, "tagpin.yaml") == (
        ImagePath("Workflow", "spec.templates[*].container.image", "argoproj.io"),
        ImagePath("Task", "spec.steps[0].image", None),
    )
    assert parse_image_paths(None, "tagpin.yaml") == ()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"kind": "Task"}, "tagpin.yaml: images.paths must be a list"),
        (["spec.steps[0].image"], "images.paths[0] must be a mapping"),
        ([{"path": "spec.image"}], "images.paths[0] needs a kind"),
        ([{"kind": "Task"}], "images.paths[0] (Task) needs a path"),
        ([{"kind": "Task", "path": "spec.image", "apiGroup": "x"}], "unknown keys apiGroup"),
        ([{"kind": "Task", "path": "spec.image", "group": 1}], "group must be a string"),
        ([{"kind": "Task", "path": "spec..image"}], 'path "spec..image" at character 5'),
        ([{"kind": "Task", "path": "spec.steps[x].image"}], "at character 11"),
        ([{"kind": "Task", "path": "spec.steps[*"}], "at character 11"),
        ([{"kind": "Task", "path": 'spec["a.b'}], "at character 5"),
        ([{"kind": "Task", "path": "[0].image"}], "must start with a key"),
        ([{"kind": "Task", "path": "spec.steps[-1].image"}], "cannot read the path"),
    ],
)
def test_parse_image_paths_rejects_bad_rules(raw: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_image_paths(raw, "tagpin.yaml")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("tagpin.yaml: images.paths")


def test_parse_image_paths_reports_every_bad_entry() -> None:
    raw = [{"kind": "A", "path": "ok.image"}, {"kind": "B"}, {"path": "x"}]
    with pytest.raises(ConfigError) as caught:
        parse_image_paths(raw, "apps/web/tagpin.yaml")
    assert caught.value.problems == (
        "apps/web/tagpin.yaml: images.paths[1] (B) needs a path, e.g. path: spec.steps[*].image",
        "apps/web/tagpin.yaml: images.paths[2] needs a kind, e.g. kind: Workflow",
    )


def test_field_describe_uses_image_field_path() -> None:
    manifest = custom("Task", "tekton.dev/v1", spec={"steps": [{"image": "a:1"}]})
    field = ImageField(manifest=manifest, path=("spec", "steps", 0, "image"), value="a:1")
    assert field.describe() == "Task/x in crd.yaml:7 at spec.steps[0].image"
