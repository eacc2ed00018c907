# SPDX-License-Identifier: GPL-2.0-or-later
"""Frozen value classes for the hooks' hot path: what @dataclass(frozen=True) makes,
written once by hand. dataclasses (with inspect and the code it generates and compiles
for each class) would cost every device hook more than the rest of its own code."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Any, Tuple


class Frozen:
    """A value compared, hashed and shown by its fields, none of which can be assigned
    after __init__. A subclass names its fields in FIELDS (in order) and sets them in its
    __init__ with _init()."""

    FIELDS: Tuple[str, ...] = ()

    def _init(self, *values: Any) -> None:
        for name, value in zip(self.FIELDS, values):
            object.__setattr__(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def replace(self, **changes: Any) -> Any:
        """A copy with the given fields changed (dataclasses.replace)."""
        values = {name: getattr(self, name) for name in self.FIELDS}
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")
