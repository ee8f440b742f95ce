"""The simulated world's node and pod maps as ``simstore`` keeps them in memory: maps that
note which entries a transaction set, deleted or changed, so a write stores those rows and
not the world.

A ``Row`` (one node or pod) notes itself on any write to its own keys (``row[k] = v``,
``update``, ``pop``...). It cannot see an edit made inside one of its values (a node's
``labels`` changed in place): the physics replaces such a value instead
(``node["labels"] = {...}``), and the test suite's check (``simstore.VERIFY``) compares the
world read back after every write with the process's copy, so an edit this misses fails a
test instead of vanishing. Nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Row(dict[str, Any]):
    """One node or pod; ``note`` is called before any write to it."""

    __slots__ = ("_note",)

    def __init__(self, value: dict[str, Any], note: Callable[[], None]) -> None:
        super().__init__(value)
        self._note = note

    def __setitem__(self, key: str, value: Any) -> None:
        self._note()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._note()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Row:  # type: ignore[override,misc]
        self._note()
        return super().__ior__(other)  # type: ignore[no-any-return]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._note()
        super().update(*args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self._note()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self._note()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._note()  # what it returns may be edited in place
        return super().setdefault(key, default)

    def clear(self) -> None:
        self._note()
        super().clear()


class Rows(dict[str, dict[str, Any]]):
    """A map of rows by key (nodes by name, pods by UID) noting in ``changed`` every key set,
    deleted, or whose row was written to. Entries set in a transaction are kept as given
    (whoever set one may still edit it; its key is noted already) until ``settled``."""

    def __init__(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        super().__init__((key, self._row(key, value)) for key, value in items)
        self.changed: set[str] = set()

    def _row(self, key: str, value: dict[str, Any]) -> Row:
        return Row(value, lambda: self.changed.add(key))

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changed.add(key)
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Rows:  # type: ignore[override,misc]
        self.update(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.changed.add(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, dict[str, Any]]:
        key, value = super().popitem()
        self.changed.add(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def clear(self) -> None:
        self.changed.update(self)
        super().clear()

    def settled(self) -> set[str]:
        """The keys changed since the last call, each entry now a noting row again, in the
        order a world read back has them (by key)."""
        changed, self.changed = self.changed, set()
        added = False
        for key in changed:
            value = self.get(key)
            if value is not None and not isinstance(value, Row):
                super().__setitem__(key, self._row(key, value))
                added = True
        if added and list(self) != sorted(self):
            # A key that sorts before others was added (a copied cluster's pods have random
            # UIDs): keep the order of a world read back, as controllers list pods in it.
            items = sorted(self.items())
            super().clear()
            for key, value in items:
                super().__setitem__(key, value)
        return changed
