"""A registry answering from a fixed table, standing in for ECR in unit tests."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from cmp.registry.base import Lookup, TagInfo

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository


class StaticRegistry:
    """`Registry` over `{repository: {tag: TagInfo}}`; repositories not in the table do not exist.

    `calls` records every question asked, so tests can tell a cache hit from a miss.
    """

    def __init__(self, images: Mapping[EcrRepository, Mapping[str, TagInfo]]) -> None:
        self._images = {repo: dict(tags) for repo, tags in images.items()}
        self.calls: list[tuple[str, EcrRepository, frozenset[str]]] = []

    @classmethod
    def of_digests(cls, digests: Mapping[EcrRepository, Mapping[str, str]]) -> StaticRegistry:
        """From `{repository: {tag: digest}}`, the shape a lock file holds."""
        return cls(
            {
                repo: {tag: TagInfo(tag, digest) for tag, digest in tags.items()}
                for repo, tags in digests.items()
            }
        )

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        wanted = frozenset(tags)
        self.calls.append(("describe_tags", repo, wanted))
        known = self._images.get(repo)
        if known is None:
            return Lookup(found={}, missing=wanted, repository_missing=True)
        return Lookup(
            found={tag: known[tag] for tag in wanted if tag in known},
            missing=frozenset(tag for tag in wanted if tag not in known),
        )

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        return None  # as ECR: every answer is a question, recorded in `calls`

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        return ()

    def list_tags(self, repo: EcrRepository) -> Lookup:
        self.calls.append(("list_tags", repo, frozenset()))
        known = self._images.get(repo)
        if known is None:
            return Lookup(repository_missing=True)
        return Lookup(found=dict(known))
