"""Resolving image tags to digests: the port (`base`), ECR (`ecr`), caches (`cache`), `static`.

Importing this package never imports boto3; only an ECR call does.
"""

from __future__ import annotations

from cmp.registry.base import Lookup, Registry, TagInfo, describe_many, is_digest

__all__ = ["Lookup", "Registry", "TagInfo", "describe_many", "is_digest"]
