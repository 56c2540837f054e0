"""One render, for every command: load the app or read the stream → find images → read the live
Application → resolve → pin → emit.

`tagpin generate`, `tagpin render` and `tagpin pin` (the Helm post-renderer too) all run
`run`, which composes the stages and nothing else: each stage's logic lives in its package.
The I/O comes in as `Services` (cmp/services.py builds the real ones from the settings), and
what the stages say goes to an `Output`; nothing here prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from cmp.errors import LockError, ResolveError, TagpinError
from cmp.observe import SILENT
from cmp.output import Output
from cmp.request import RenderRequest
from cmp.services import (
    Services,
    lock_only_source,
    registry_for,
    services_for,
    template_cache_dir,
)
from cmp.settings import MARKER_FILE
from cmp.source.emit import emit_stream
from cmp.source.manifests import Manifest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cmp.images.pin import ImageRules, PinReport, Wanted
    from cmp.observe import RenderObserver
    from cmp.registry.pushes import PushFloors


class RenderResult(NamedTuple):
    """The YAML to print, the objects it holds, and what the render said on stderr."""

    text: str
    manifests: list[Manifest]
    warnings: list[str]
    notes: list[str]  # human summary (overrides applied)


class Loaded(NamedTuple):
    """What the first stage hands on: the objects, the rules their images are pinned by, and
    for an app the values that explain a tag that is a number."""

    manifests: list[Manifest]
    rules: ImageRules
    values: Mapping[str, Any] | None = None


def run(
    request: RenderRequest, services: Services | None = None, output: Output | None = None
) -> RenderResult:
    """Render or read `request`'s objects, pin their images, emit canonical YAML."""
    said = output if output is not None else Output()
    if services is None:
        services = services_for(request.settings, request.settings_env)
    loaded = load(request, said)
    pin_images(loaded, request, services, said)
    text = emit_stream(m.body for m in loaded.manifests)
    return RenderResult(text, loaded.manifests, said.warnings, said.notes)


def load(request: RenderRequest, output: Output) -> Loaded:
    """The objects to pin: the app rendered, or the stream read; with tagpin.yaml's image
    rules. An image that depends on how YAML read a value is refused here."""
    from cmp.images.pin import ImageRules

    if request.stream is not None:
        from cmp.source.stream import read_config, read_stream

        config = request.stream.config  # read first, as an app's tagpin.yaml is
        rules = ImageRules.of(read_config(config), str(config)) if config else ImageRules()
        manifests = read_stream(
            request.stream,
            default_namespace=request.app.namespace,
            max_nodes=request.settings.max_yaml_nodes,
            output=output,
        )
        return Loaded(manifests, rules)
    from cmp.images import preload
    from cmp.source.render import render_app

    app = render_app(
        request,
        template_cache_dir(request.settings, request.settings_env),
        output,
        meanwhile=preload,
    )
    rules = ImageRules.of(app.source.config, MARKER_FILE)
    if app.misread and app.as_written is not None:
        from cmp.images.misread import refuse_misread_images

        refuse_misread_images(app.manifests, rules.paths, app.misread, app.as_written)
    return Loaded(app.manifests, rules, app.values)


def pin_images(loaded: Loaded, request: RenderRequest, services: Services, output: Output) -> None:
    """Every ECR image of `loaded` pinned to its digest, in place: the tag git names, or the one
    a branch deploy chooses. The live Application is read once, before any tag is resolved:
    its annotations hold the branch deploy and the pushes the caches must honour."""
    from cmp.images.pin import collect, pin
    from cmp.imageupdater.choose import choose_tags
    from cmp.registry.pushes import PushFloors

    settings = request.settings
    observer = services.observer
    pushes = PushFloors(skew=float(settings.push_clock_skew))
    registry = registry_for(request, services, pushes, output.warnings)
    wanted, report = collect(loaded.manifests, loaded.rules)
    if wanted:
        annotations, said = services.live_application(request)
        output.warn(*said, *pushes.announce_annotations(annotations))
        asked = registry()
        try:
            chosen = choose_tags(
                wanted,
                annotations,
                request.parameters.get("image-updater") or {},
                request.words.image_updater,
                asked,
                output,
                lock_only_source(request),
            )
            pin(wanted, report, asked, settings.ecr_concurrency, chosen)
        except (ResolveError, LockError) as error:
            raise_explained(error, loaded)
        if pushes and observer is not SILENT:  # a render in its own process tells no one
            report_pinned_pushes(wanted, report, pushes, observer)
    output.warn(*report.notices())


def report_pinned_pushes(
    wanted: list[Wanted], report: PinReport, pushes: PushFloors, observer: RenderObserver
) -> None:
    """Tell `observer` what the push floor decided per repository, and of each announced
    push whose digest this render pinned, with the seconds since the webhook recorded it (the
    server times each push once)."""
    import hashlib
    import time

    for admitted in pushes.decisions():
        observer.push_floor_decided(admitted)
    now = time.time()
    for item, (_, value) in zip(wanted, report.pinned[-len(wanted) :], strict=True):
        push = pushes.pushed(item.repository)
        if push is not None and push.digest and value.endswith("@" + push.digest):
            named = f"{item.repository.registry.host}/{item.repository.name}@{push.at!r}"
            observer.push_pinned(hashlib.sha256(named.encode()).hexdigest()[:16], now - push.at)


def raise_explained(error: TagpinError, loaded: Loaded) -> NoReturn:
    """Raise `error`; `tag: 1.10` in a values file is the number 1.1, so a missing tag `1.1`
    says which value (what a render and `tagpin lock` both say)."""
    if loaded.values:
        from cmp.source.hints import with_number_hints

        hinted = with_number_hints(error, loaded.values)
        if hinted is not error:
            raise hinted from error
    raise error
