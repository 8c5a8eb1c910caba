"""Component health per account: what ``/health`` answers from, and its gauge."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from engine.observability.prometheus import Registry, Sample

HEALTH_COMPONENTS: tuple[str, ...] = ("auth", "stream", "breaker", "limiter")


@dataclass(slots=True)
class ComponentState:
    state: (
        str  # e.g. auth: ok|refreshing|failed; stream: synced|connecting|down; breaker: closed|open
    )
    healthy: bool
    detail: str = ""  # a sentence a person can act on, never a secret
    since_ns: int = field(default_factory=time.monotonic_ns)
    # The detail as given, and the registry's secret generation it was checked at: an unchanged
    # detail is not checked again (the health pass sets every component every second).
    raw: str = field(default="", repr=False)
    generation: int = field(default=0, repr=False)


class HealthBoard:
    """Per-account, per-component state, set by the components themselves.

    An account is healthy when every component it has reported is healthy and every component in
    :data:`HEALTH_COMPONENTS` has reported at least once (silence is not health).
    """

    def __init__(self, registry: Registry, required: Iterable[str] = HEALTH_COMPONENTS) -> None:
        self.required = tuple(required)
        self._states: dict[str, dict[str, ComponentState]] = {}
        self._registry = registry
        registry.gauge(
            "tl_component_healthy",
            "1 when the component is healthy for the account, 0 otherwise (its state and detail "
            "are in /status: a label whose value changed with load would make a series per value)",
            ("account", "component"),
            callback=self._samples,
        )

    def set(
        self, account: str, component: str, state: str, healthy: bool, detail: str = ""
    ) -> None:
        comps = self._states.get(account)
        if comps is None:
            comps = self._states[account] = {}
        current = comps.get(component)
        generation = self._registry.generation
        if current is not None and current.state == state and current.healthy == healthy:
            if current.raw != detail or current.generation != generation:
                current.detail = self._registry.safe_label(detail)
                current.raw = detail
                current.generation = generation
            return
        comps[component] = ComponentState(
            state=state,
            healthy=healthy,
            detail=self._registry.safe_label(detail),
            raw=detail,
            generation=generation,
        )

    def forget(self, account: str) -> None:
        self._states.pop(account, None)

    def accounts(self) -> list[str]:
        return sorted(self._states)

    def account(self, account: str) -> dict[str, ComponentState]:
        return dict(self._states.get(account, {}))

    def account_healthy(self, account: str) -> bool:
        states = self._states.get(account, {})
        return all(c in states for c in self.required) and all(s.healthy for s in states.values())

    def healthy(self) -> bool:
        return bool(self._states) and all(self.account_healthy(a) for a in self._states)

    def _samples(self) -> Iterator[Sample]:
        for account, comps in list(self._states.items()):
            for component, s in comps.items():
                yield (
                    {"account": account, "component": component},
                    (1.0 if s.healthy else 0.0),
                )
