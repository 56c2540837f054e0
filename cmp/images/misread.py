"""An image must not depend on how YAML read a value: `tag: 1.10` in a values file is the number
1.1, a template prints it as 1.1, and the render deployed `:1.1` (#23 item 1).

Values that print unlike their text are known from loading (cmp/source/yamlread.Misread:
floats such as 1.10, 1e3, .5; integers such as 010, 0x1F, 1_000; booleans yes, on, true). After
a render, if the printed form of one of them appears in an image rendered by a template (not
inside a longer number or word), the templates are rendered once more with those values
printing as written (cmp/source/aswritten.py). An image that then differs exactly by those
texts depends on YAML's reading, and the render is refused, naming the value's file, line and
text as written. Following the values themselves through Jinja2 would miss filters and string
methods that turn them into text; rendering again sees every way they can be printed. The
second render only happens when such a value's printed form is in an image, which a correctly
quoted app never has. If it fails, the images holding the printed form are refused (quoting the
value is always a safe fix)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from cmp.errors import ConfigError, TagpinError
from cmp.images.fields import FieldPath, ImageField, ImagePath, find_images
from cmp.images.reference import quoted
from cmp.source.manifests import Manifest
from cmp.source.yamlread import Misread

# Renders the app again with the given values printing as written; its manifests.
Rerender = Callable[[Sequence[Misread]], list[Manifest]]


def refuse_misread_images(
    manifests: Sequence[Manifest],
    paths: Sequence[ImagePath],
    misread: Sequence[Misread],
    rerender: Rerender,
) -> None:
    """Raise a ConfigError for every image that depends on how YAML read a value."""
    printed = _first_of_each(item for item in misread if item.printed)  # `true` ×1000: one
    if not printed:
        return
    suspects = [
        image
        for image in find_images(manifests, paths)
        if image.manifest.source.endswith(".j2") and _holding(image.value, printed)
    ]
    if not suspects:
        return
    involved = _first_of_each(item for image in suspects for item in _holding(image.value, printed))
    try:
        again = {_key(image): image.value for image in find_images(rerender(involved), paths)}
    except (TagpinError, RecursionError) as error:
        reason = str(error).split("\n", 1)[0]
        raise ConfigError(*(_unsure(image, involved, reason) for image in suspects)) from None
    problems = []
    for image in suspects:
        other = again.get(_key(image))
        if other is None or other == image.value:
            continue
        used = _explaining(image.value, other, involved)
        problems += [_problem(item, image, _as_written(image.value, used)) for item in used]
    if problems:
        raise ConfigError(*dict.fromkeys(problems))


def _key(image: ImageField) -> tuple[str, int, FieldPath]:
    return image.manifest.source, image.manifest.line, image.path


def _first_of_each(items: Iterable[Misread]) -> list[Misread]:
    """One value per (type, value), the first: the second render prints them all that way."""
    seen: dict[tuple[type, object], Misread] = {}
    for item in items:
        seen.setdefault((type(item.value), item.value), item)
    return list(seen.values())


@lru_cache(maxsize=1024)
def _token(printed: str) -> re.Pattern[str]:
    """`printed` not inside a longer number (`1.1` in `1.10`) or word (`True` in `Trueish`)."""
    edge = "[0-9]" if printed[-1].isdigit() else "[0-9A-Za-z]"
    start = "[0-9]" if printed[0].isdigit() else "[0-9A-Za-z]"
    return re.compile(f"(?<!{start}){re.escape(printed)}(?!{edge})")


def _holding(image: str, misread: Sequence[Misread]) -> list[Misread]:
    return [item for item in misread if _token(item.printed).search(image)]


def _explaining(before: str, after: str, involved: Sequence[Misread]) -> list[Misread]:
    """The values whose printed forms, made their written text (quoted, as `to_yaml` writes
    text), turn `before` into `after`; none when the difference is something else (a branch
    that tested a boolean's type)."""
    used = _holding(before, involved)
    for quote in ("", "'", '"'):
        text = before
        for item in used:
            written = (quote + item.text + quote).replace("\\", "\\\\")
            text = _token(item.printed).sub(written, text)
        if text == after:
            return used
    return []


def _as_written(image: str, used: Sequence[Misread]) -> str:
    for item in used:
        image = _token(item.printed).sub(item.text.replace("\\", "\\\\"), image)
    return image


def _problem(item: Misread, image: ImageField, meant: str) -> str:
    if not item.line:  # the `values` parameter, typed as helm --set types it
        return (
            f"{item.source}: {item.key}={item.text} is read as {item.read_as}, so "
            f"{image.describe()} would deploy {quoted(image.value)}, not {quoted(meant)}; the "
            f"values parameter reads true, false, null and integers as such (helm --set does "
            f"too): set {item.key}: '{item.text}' in a values file instead"
        )
    quoted_text = item.text.replace("'", "''")
    return (
        f"{item.where}: {item.written} is read by YAML as {item.read_as}, so "
        f"{image.describe()} would deploy {quoted(image.value)}, not {quoted(meant)}; write "
        + (f"{item.key}: '{quoted_text}'" if item.key else f"'{quoted_text}'")
        + " (quoted, it stays text)"
    )


def _unsure(image: ImageField, involved: Sequence[Misread], reason: str) -> str:
    items = _holding(image.value, involved)
    named = "; ".join(f"{item.where}: {item.written} is {item.read_as}" for item in items)
    return (
        f"{image.describe()}: the image {quoted(image.value)} holds what a template prints for "
        f"values YAML reads unlike their text ({named}); quote them so they stay text (tagpin "
        f"could not render the app again with them as written to be sure: {reason})"
    )
