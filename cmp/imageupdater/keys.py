"""Every key Argo CD Image Updater defines under its annotation prefix, so a typo fails loudly.

Image Updater ignores a key it does not know, so `web.allow-tag` (no `s`) silently deploys the
highest release to a branch environment. tagpin refuses such keys and names the closest valid
one. Keys Image Updater defines but tagpin does not use (Helm and Kustomize targets, pull
secrets, platforms, write-back) are accepted silently: the same annotations also drive Image
Updater itself.

Source: argocd-image-updater `pkg/common/constants.go` and
`registry-scanner/pkg/common/constants.go` at v0.18.0, and `pkg/argocd/annotations.go` at v1.3
(the same keys).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from cmp.errors import ConfigError

# Keys without an alias (`ApplicationWide*`, the image list and write-back settings).
APP_WIDE_KEYS = (
    "image-list",
    "allow-tags",
    "ignore-tags",
    "force-update",
    "update-strategy",
    "pull-secret",
    "write-back-method",
    "write-back-target",
    "git-branch",
    "git-repository",
)
# Keys after `<alias>.` (`/%s.<option>` in Image Updater); `tag-match` is the deprecated
# spelling of allow-tags that v0.18 still reads.
ALIAS_OPTIONS = (
    "allow-tags",
    "ignore-tags",
    "force-update",
    "update-strategy",
    "pull-secret",
    "platforms",
    "helm.image-name",
    "helm.image-tag",
    "helm.image-spec",
    "kustomize.image-name",
    "tag-match",
)


def alias_of(key: str) -> str | None:
    """The alias part of a well-formed per-alias key, else None."""
    for option in ALIAS_OPTIONS:
        suffix = "." + option
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return None


def check_keys(keys: Iterable[tuple[str, str, str]], aliases: Iterable[str] | None) -> None:
    """Raise ConfigError for every (key without prefix, where it was written, prefix as
    written there) that Image Updater does not define, or that names an alias the image list
    does not define (`aliases` None: there is no image list)."""
    known_aliases = sorted(set(aliases)) if aliases is not None else None
    valid = list(APP_WIDE_KEYS)
    for known in known_aliases or ():
        valid.extend(f"{known}.{option}" for option in ALIAS_OPTIONS)
    problems: list[str] = []
    for key, where, prefix in keys:
        if key in APP_WIDE_KEYS:
            continue
        alias = alias_of(key)
        if alias is not None and (known_aliases is None or alias in known_aliases):
            continue
        if alias is not None and known_aliases is not None:
            closest = difflib.get_close_matches(alias, known_aliases, n=1)
            hint = f"; did you mean '{prefix}{closest[0]}{key[len(alias) :]}'?" if closest else ""
            problems.append(
                f"{where} '{prefix}{key}' names the alias '{alias}', which the image-list does "
                f"not define (aliases: {', '.join(known_aliases) or 'none'}){hint}"
            )
            continue
        candidates = valid if known_aliases else [*valid, *_alias_shapes(key)]
        closest = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
        hint = f"; did you mean '{prefix}{closest[0]}'?" if closest else ""
        problems.append(f"{where} '{prefix}{key}' is not an Argo CD Image Updater key{hint}")
    if problems:
        raise ConfigError(*problems)


def _alias_shapes(key: str) -> list[str]:
    """With no image list to take aliases from, read the text before the first dot as the
    alias, so `web.allow-tag` still suggests `web.allow-tags`."""
    head, dot, _ = key.partition(".")
    return [f"{head}.{option}" for option in ALIAS_OPTIONS] if dot else []


def check_sources(
    annotations: Mapping[str, str],
    parameter: Mapping[str, str],
    aliases: Iterable[str] | None,
    prefix: str,
    parameter_name: str = "image-updater parameter",
) -> None:
    """check_keys over the live annotations under `prefix` and the `image-updater` parameter
    (named `parameter_name` in messages), whose keys go without the prefix."""
    where = f"{parameter_name} key"
    prefixed = [key for key in sorted(parameter) if key.startswith(prefix)]
    if prefixed:  # an annotation copied whole; check_keys would suggest a wrong key for it
        raise ConfigError(
            *(
                f"{where} '{key}' carries the annotation prefix; drop '{prefix}' and write "
                f"'{key[len(prefix) :]}'"
                for key in prefixed
            )
        )
    keys = [
        (key[len(prefix) :], "annotation", prefix)
        for key in sorted(annotations)
        if key.startswith(prefix)
    ]
    keys += [(key, where, "") for key in sorted(parameter)]
    check_keys(keys, aliases)
