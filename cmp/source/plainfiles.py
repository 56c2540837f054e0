"""Plain files (`templates/*.yaml`, `.yml`, `.json`) are copied as written: Jinja2 in one is a
mistake to report, not text to deploy.

Braces are also data: Prometheus alerts (`{{ $labels.pod }}`), Argo Workflows
(`{{inputs.parameters.x}}`), Go and Helm templates in a ConfigMap (`{{ .Values.x }}`). So the
rule is precise:

- an expression or statement that uses tagpin's template context (`values.`, `app.`, `env.`,
  `params.`, `kube.` as a name of its own, not `.Values.` or `$labels.`) was written for
  tagpin: an error, since deploying `{{ app.name }}` literally changes what runs;
- any other Jinja2 statement or comment (`{% … %}`, `{# … #}`; no other template language
  tagpin knows uses them): a warning;
- other `{{ … }}`: data, silent.

A file listed in tagpin.yaml's `templates.literal` is data as a whole: never checked.
Only scalars are looked at (a `# {{ app.name }}` comment is not deployed); `${{ … }}` (GitHub
Actions) and `${#…}` (shell) are not Jinja2.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import yaml

# A Jinja2 tag with its delimiters; `$` before it makes it another language's. No brace
# inside and bounded, so a file of unclosed `{{` costs linear time (such a tag goes unseen).
_TAG = re.compile(r"(?<!\$)\{([{%#])([^{}]{0,2000}?)(?:\}\}|%\}|#\})")
_OPEN = re.compile(r"(?<!\$)\{[{%#]")
# A context name used as a variable: not after `.`, `$` or a word character, before `.` or `[`.
_CONTEXT_USE = re.compile(r"(?<![\w.$])(?:values|app|env|params|kube)\s*[.\[]", re.ASCII)
_MAX_SHOWN = 60

_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class JinjaTag(NamedTuple):
    """A Jinja2 tag found in a plain file."""

    line: int  # 1-based
    text: str  # as written, cut short
    for_tagpin: bool  # it uses tagpin's template context
    expression: bool  # `{{ … }}`, which other template languages share; else `{% %}`, `{# #}`


def may_hold_jinja(text: str) -> bool:
    """The cheap test every plain file goes through."""
    return _OPEN.search(text) is not None


def jinja_tags(text: str) -> list[JinjaTag]:
    """Jinja2 tags in the scalars of a plain YAML or JSON file. If the file is not valid
    YAML, every line but comment lines is looked at (the parse error comes later)."""
    if not may_hold_jinja(text):
        return []
    found: list[JinjaTag] = []
    try:
        flow_starts: set[int] = set()
        for token in yaml.scan(text, Loader=_CLoader):
            start = token.start_mark.index if token.start_mark is not None else 0
            if isinstance(token, yaml.ScalarToken) and may_hold_jinja(token.value):
                found += _tags_in(token.value, text, start)
            elif isinstance(token, yaml.FlowMappingStartToken):
                flow_starts.add(start)
        # Unquoted, `{{ app.name }}` is YAML too: a mapping in a mapping.
        for start in sorted(flow_starts):
            if start + 1 in flow_starts:
                end = text.find("}}", start)
                found += _tags_in(text[start : end + 2], text, start) if end > 0 else []
        found.sort(key=lambda tag: tag.line)  # stable: in order within a line
    except yaml.YAMLError:
        found = []
        offset = 0
        for line in text.splitlines(keepends=True):
            if not line.lstrip().startswith("#"):
                found += _tags_in(line, text, offset)
            offset += len(line)
    return found


def _tags_in(value: str, text: str, start: int) -> list[JinjaTag]:
    tags = []
    for match in _TAG.finditer(value):
        written = text.find(match[0], start)  # the scalar's text as written, when it can be
        line = text.count("\n", 0, written if written >= 0 else start) + 1
        shown = match[0] if len(match[0]) <= _MAX_SHOWN else match[0][: _MAX_SHOWN - 1] + "…"
        for_tagpin = match[1] != "#" and _CONTEXT_USE.search(match[2]) is not None
        tags.append(JinjaTag(line, shown, for_tagpin, expression=match[1] == "{"))
    return tags


def rename_hint(name: str) -> str:
    return (
        f"{name} is a plain file, copied as written: rename it to {name.rsplit('/', 1)[-1]}.j2 "
        "to render it with Jinja2 (if the braces are data for another tool, list the file in "
        "tagpin.yaml templates.literal)"
    )
