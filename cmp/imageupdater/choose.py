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
    from cmp.imageupdater.plan import branch_deploys

    return branch_deploys(
        [(w.field, w.repository, w.ref.repository, w.tag) for w in wanted],
        annotations,
        parameter,
        parameter_name,
        registry,
        output,
        tags_from,
    )
