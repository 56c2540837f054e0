"""What a render asks of branch deploys: the tags Image Updater's rules choose for some of its
images. A production app has no rule, and decides so without importing the rest of the
package (semver, RE2, the planner: ~13 ms in a fresh process)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cmp.settings import IMAGE_UPDATER_PREFIX

if TYPE_CHECKING:
    from cmp.images.fields import ImageField
    from cmp.images.pin import Wanted
    from cmp.output import Output
    from cmp.registry.base import Registry, TagInfo


def choose_tags(
    wanted: Sequence[Wanted],
    annotations: Mapping[str, str],
    parameter: Mapping[str, str],
    parameter_name: str,
    registry: Registry,
    output: Output,
    tags_from: str | None = None,
) -> Mapping[ImageField, TagInfo]:
    """The tags Image Updater's rules (the live Application's annotations, under the
    `image-updater` parameter, named `parameter_name`) choose for some of `wanted`, each with
    its digest; warnings and a note per override go to `output`. `tags_from`: what alone
    answers when ECR is never asked (`--digests FILE`), named when a branch's tag is missing."""
    if not parameter and not any(key.startswith(IMAGE_UPDATER_PREFIX) for key in annotations):
        return {}  # production apps: git's tags
    from cmp.errors import ResolveError
    from cmp.imageupdater.plan import annotate, plan, policies_from, policy_warnings

    policies = policies_from(annotations, parameter, parameter_name)  # a typo fails here
    output.warn(*policy_warnings(policies))  # before the plan can fail: they often explain it
    if not policies:
        return {}
    rows = [(w.field, w.repository, w.ref.repository, w.tag) for w in wanted]
    try:
        chosen = plan(rows, policies, lambda: registry)
    except ResolveError as error:
        if tags_from is None:
            raise
        raise type(error)(
            *error.problems,
            (
                f"the candidate tags came from {tags_from} only: ECR is never listed there, so "
                "a branch's new tags are not seen; branch deploys need TAGPIN_LOCK=use (or a "
                "lock holding the branch's tags)"
            ),
        ) from error
    output.warn(*chosen.warnings)
    output.note(*annotate(chosen.overrides))  # and each workload says which rule chose it
    return chosen.chosen
