"""Named extension points, so a lower package can call into a higher one without importing it.

The package that calls declares the hook; the package that implements it never imports
the caller's internals; the composition root connects the two at start-up
(``hook.provide(implementation)``). A hook used before it is provided says which one is
missing instead of silently doing nothing.
"""

from __future__ import annotations

from typing import Any


class HookNotProvided(RuntimeError):
    """A hook was called before the composition root provided it."""


class Hook:
    """One extension point: call it (``hook(...)``) or use its attributes (``hook.plan(...)``);
    both go to the implementation provided last."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._implementation: Any = None

    def provide(self, implementation: Any) -> None:
        self._implementation = implementation

    @property
    def implementation(self) -> Any:
        if self._implementation is None:
            raise HookNotProvided(f"the hook {self.name!r} has no implementation: the composition "
                                  "root (appliance.app, appliance.cli) provides it at start-up")
        return self._implementation

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.implementation(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.implementation, attribute)

    def __repr__(self) -> str:
        return f"Hook({self.name!r})"
