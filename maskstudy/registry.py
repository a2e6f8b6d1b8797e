"""Name → object registries: one place names every model, dataset, criterion and regime.

Your own entries register from your own modules: those named in ``$MASKSTUDY_PLUGINS``
(comma-separated module names, importable on ``sys.path``) and those an installed package
declares under the ``maskstudy.plugins`` entry-point group are imported the first time any
registry is asked for a name, in every process, sweep workers included (docs/architecture.md,
"How to add").
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from maskstudy.errors import ConfigError, did_you_mean

T = TypeVar("T")
PLUGINS_ENV = "MASKSTUDY_PLUGINS"
PLUGIN_GROUP = "maskstudy.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import the plugin modules once per process (ConfigError naming one that fails)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # before importing: a plugin's own registrations must not recurse
    modules = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    try:
        for module in modules:
            importlib.import_module(module)
        for point in entry_points(group=PLUGIN_GROUP):
            point.load()
    except Exception as error:
        _plugins_loaded = False  # the same error again on the next lookup, not a silent gap
        raise ConfigError(
            f"a maskstudy plugin failed to import ({type(error).__name__}: {error}); "
            f"{PLUGINS_ENV} = {os.environ.get(PLUGINS_ENV, '')!r}: each must be an importable "
            "module name, e.g. MASKSTUDY_PLUGINS=my_models with my_models.py on PYTHONPATH"
        ) from error


class Registry(Generic[T]):
    """A dict of named entries whose lookups fail with the list of valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (names are unique)."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        load_plugins()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                f"valid {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
