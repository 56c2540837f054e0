"""Images tagpin leaves unpinned are named, one line each, unless the app declares them; only
references tagpin would pin must parse; a host almost like ECR's is an error (#23 items 2, 18)."""

from __future__ import annotations

import pytest

from cmp.errors import ImageError
from cmp.images.pin import ImageRules, PinReport, collect, pin
from cmp.source.manifests import Manifest
from tests.support.ecr_repos import ecr_repository
from tests.support.static_registry import StaticRegistry

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "ab" * 32


def deployment(name: str, *images: str) -> Manifest:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    return Manifest(body, source="templates/app.yaml", line=1)


# What the 850-manifest survey found in Argo CD-applied files (knative, tekton, samples).
NOT_REFERENCES = [
    "ko://knative.dev/serving/cmd/queue",
    "$(params.BUILDER_IMAGE)",
    "<YOUR-CONTAINER>",
    "",
    "nginx::1",
]


def report_of(*manifests: Manifest, rules: ImageRules | None = None) -> PinReport:
    registry = StaticRegistry.of_digests({ecr_repository("shop/web"): {"v1": DIGEST}})
    wanted, report = collect(list(manifests), rules or ImageRules())
    pin(wanted, report, registry)
    return report


def test_references_tagpin_would_not_pin_need_not_parse_and_are_named() -> None:
    manifest = deployment("tools", *NOT_REFERENCES, f"{ECR}/shop/web:v1")
    report = report_of(manifest)
    containers = manifest.body["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [*NOT_REFERENCES, f"{ECR}/shop/web:v1@{DIGEST}"]
    assert report.notices() == [
        f'not pinned: "{image}" is not a valid image reference (in '
        f"Deployment/tools in templates/app.yaml:1 at spec.template.spec.containers[{i}]."
        "image); list it in images.allowUnpinned in tagpin.yaml to say that is meant"
        for i, image in enumerate(NOT_REFERENCES)
    ]


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        (f"{ECR}/Shop/Web:v1", "uppercase letters in the repository path"),
        (f"{ECR}/shop/web:$(params.tag)", "invalid tag"),
        (f" {ECR}/shop/web:v1", "contains whitespace"),
        (f"{ECR.replace('.com', '.co')}/shop/web:v1@sha256:xyz", "invalid digest"),
        ("public.ecr.aws/nginx/nginx:1.25 ", "contains whitespace"),
    ],
)
def test_references_tagpin_would_pin_must_parse(image: str, problem: str) -> None:
    with pytest.raises(ImageError) as caught:
        collect([deployment("web", image)], ImageRules())
    assert problem in str(caught.value)
    assert str(caught.value).startswith("Deployment/web in templates/app.yaml:1 at spec.")


def test_one_line_per_image_with_its_reason_and_how_many_use_it() -> None:
    report = report_of(
        deployment("a", "nginx:1.27", "public.ecr.aws/nginx/nginx:1.25"),
        deployment("b", "nginx:1.27", f"{ECR}/shop/web:v1", f"{ECR}/shop/web:v1@{DIGEST}"),
        deployment("c", "nginx:1.27"),
    )
    assert report.notices() == [
        'not pinned: "nginx:1.27" is not in ECR (in '
        "Deployment/a in templates/app.yaml:1 at spec.template.spec.containers[0].image and 2 "
        "more); list it in images.allowUnpinned in tagpin.yaml to say that is meant",
        'not pinned: "public.ecr.aws/nginx/nginx:1.25" is in ECR Public, which tagpin leaves as '
        "written by design (a separate, public API it does not ask) (in Deployment/a in "
        "templates/app.yaml:1 at spec.template.spec.containers[1].image); list it in "
        "images.allowUnpinned in tagpin.yaml to say that is meant",
    ]


@pytest.mark.parametrize(
    "pattern",
    ["nginx:1.27", "nginx", "nginx:*", "*", "ngin?:1.2[0-9]"],
)
def test_declared_images_are_silent(pattern: str) -> None:
    rules = ImageRules(allow_unpinned=(pattern, "ko://*"))
    report = report_of(deployment("a", "nginx:1.27", "ko://knative.dev/x"), rules=rules)
    assert report.notices() == []


def test_a_pattern_matches_the_reference_or_its_repository_not_a_part() -> None:
    rules = ImageRules(allow_unpinned=("quay.io/org", "ngin"))
    report = report_of(deployment("a", "quay.io/org/tool:3", "nginx:1.27"), rules=rules)
    assert len(report.notices()) == 2


def test_require_digests_refuses_every_undeclared_unpinned_image_and_spares_declared_ones() -> None:
    rules = ImageRules(require_digests=True, allow_unpinned=("quay.io/*",))
    manifest = deployment("a", "quay.io/org/tool:3", "nginx:1.27", "<YOUR-CONTAINER>")
    with pytest.raises(ImageError) as caught:
        collect([manifest], rules)
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        f"{image!r} is not pinned to a digest and is {why}, so tagpin cannot pin it; write it as "
        "name:tag@sha256:..., or list it in images.allowUnpinned (tagpin.yaml sets "
        "images.requireDigests: true)"
        for image, why in [
            ("nginx:1.27", "not in ECR"),
            ("<YOUR-CONTAINER>", "not a valid image reference"),
        ]
    ]


@pytest.mark.parametrize(
    ("image", "nearest"),
    [
        (f"{ECR.replace('.com', '.co')}/shop/web:v1", ECR),
        (f"{ECR.replace('123456789012', '12345678901')}/shop/web:v1", "12345678901.dkr.ecr"),
        (f"{ECR.replace('eu-west-1', 'eu-wset-1')}/shop/web:v1", ECR),
        (f"{ECR.upper()}/shop/web:v1", ECR),
        (f"{ECR.replace('dkr.ecr', 'dkr-ecr')}/shop/web:v1", ECR),
        (f"{ECR.replace('.com', '.co')}/shop/web:v1@{DIGEST}", ECR),  # pinned, still a typo
        ("publc.ecr.aws/nginx/nginx:1.25", "public.ecr.aws"),
    ],
)
def test_a_host_almost_like_ecr_is_an_error_naming_the_nearest_valid_host(
    image: str, nearest: str
) -> None:
    with pytest.raises(ImageError) as caught:
        report_of(deployment("web", image, "nginx:1.27"))
    [problem] = caught.value.problems
    host = image.split("/", 1)[0]
    assert problem.startswith(
        "Deployment/web in templates/app.yaml:1 at spec.template.spec.containers[0].image: "
        f'image "{image}": registry host "{host}" '
    )
    assert nearest in problem.rsplit(": ", 1)[1]


def test_declaring_a_lookalike_does_not_excuse_it() -> None:
    image = f"{ECR.replace('.com', '.co')}/shop/web:v1"
    with pytest.raises(ImageError):
        report_of(deployment("web", image), rules=ImageRules(allow_unpinned=("*",)))
