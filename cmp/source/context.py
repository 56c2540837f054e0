"""What a template sees: `values`, `app`, `env`, `params` and `kube` (docs/guide.md, Template
context). Mappings and lists know their own dotted path, so an undefined lookup says which value
(cmp/source/templates.py), and the kept output of a render is keyed by exactly this
(cmp/source/rendercache.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cmp.request import KubeInfo


class Tree(dict[str, Any]):
    """A mapping that knows its own dotted path, so undefined lookups say which value."""

    __slots__ = ("_tagpin_path",)

    def __init__(self, items: Mapping[str, Any], path: str) -> None:
        super().__init__(items)
        self._tagpin_path = path


class TreeList(list[Any]):
    """A list that knows its own dotted path, so a lookup into one of its items can say which
    (`values.ports[0] is a number (80)`), whatever was looked up in between."""

    __slots__ = ("_tagpin_path",)

    def __init__(self, items: Iterable[Any], path: str) -> None:
        super().__init__(items)
        self._tagpin_path = path


def tree(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return Tree({k: tree(v, f"{path}.{k}") for k, v in value.items()}, path)
    if isinstance(value, list):
        return TreeList((tree(v, f"{path}[{i}]") for i, v in enumerate(value)), path)
    return value


class KubeCapabilities:
    """The `kube` template variable: the destination cluster's version and APIs."""

    def __init__(self, info: KubeInfo) -> None:
        self.version = info.version
        parts = (info.version.split(".") + ["", ""])[:2]
        self.major, self.minor = parts[0], parts[1]
        self.api_versions = info.api_versions
        self._apis = frozenset(info.api_versions)

    def has(self, api: str) -> bool:
        """`kube.has("batch/v1/CronJob")` or `kube.has("batch/v1")`, like Helm's APIVersions.Has."""
        return api in self._apis


def build_context(
    values: Mapping[str, Any],
    app: Mapping[str, Any],
    env: Mapping[str, str],
    params: Mapping[str, Any],
    kube: KubeInfo,
) -> dict[str, Any]:
    return {
        "values": tree(values, "values"),
        "app": tree(app, "app"),
        "env": tree(dict(env), "env"),
        "params": tree(dict(params), "params"),
        "kube": KubeCapabilities(kube),
    }
