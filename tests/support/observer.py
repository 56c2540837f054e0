"""An observer of the registry layers that records what they report, for tests."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from cmp.registry.observe import RegistryObserver

if TYPE_CHECKING:
    from cmp.registry.observe import Layer, Outcome, Question, RedisTrouble


class Recorder(RegistryObserver):
    """Every report, in order, as a tuple: the method's name, then its arguments."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def answered(self, layer: Layer, question: Question, outcome: Outcome) -> None:
        with self._lock:
            self.events.append(("answered", layer, question, outcome))

    def ecr_called(self, operation: str, error: str | None, retries: int) -> None:
        with self._lock:
            self.events.append(("ecr_called", operation, error, retries))

    def redis_trouble(self, trouble: RedisTrouble) -> None:
        with self._lock:
            self.events.append(("redis_trouble", trouble))

    def waited(self, layer: Layer) -> None:
        with self._lock:
            self.events.append(("waited", layer))
