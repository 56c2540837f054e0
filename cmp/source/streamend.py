"""A YAML stream that ends inside a block scalar (`|`, `>`) with no final line break.

Kubernetes tools read such a stream through apimachinery's document splitter, which ends every
line with a line break, the last one too: Argo CD, kubectl and Helm's install read `x: |` +
`  a` at the end of a file as "a\\n". A YAML parser alone (go-yaml, PyYAML, the `yaml` npm
package) reads "a". tagpin reads as Argo CD does (cmp/source/yamlread.py), so what it writes is
what would deploy; this finds the case so a render can say so.
"""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def unterminated_block(text: str) -> int | None:
    """The 1-based line where the block scalar that ends `text` starts, when `text` has no
    final line break and the two readings of that scalar differ; else None."""
    if not text or text.endswith(("\n", "\r")):
        return None
    # Only the last document can hold the last scalar (a splitter's `---` line starts one).
    start = 0 if text.startswith("---") else text.rfind("\n---") + 1
    chunk = text[start:]
    with_break, without = _last_scalar(chunk + "\n"), _last_scalar(chunk)
    if with_break is None or without is None or with_break.style not in ("|", ">"):
        return None
    if with_break.value == without.value:  # `|-` strips the line break either way
        return None
    line: int = text.count("\n", 0, start) + with_break.start_mark.line + 1
    return line


def _last_scalar(text: str) -> Any:
    """The last scalar node of `text`'s last document, or None (no scalar, or not YAML)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError:
        return None
    node = nodes[-1] if nodes else None
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node if isinstance(node, yaml.ScalarNode) else None


def warning(where: str) -> str:
    """What to tell the user about the block scalar at `where` (`file:line`)."""
    return (
        f"{where}: this block scalar ends the file with no line break after it: Argo CD and "
        "kubectl read its value with a final line break, a YAML parser alone (go-yaml, PyYAML) "
        "without; tagpin writes what Argo CD reads (with it): end the file with a line break, "
        "or write `|-` to drop it"
    )
