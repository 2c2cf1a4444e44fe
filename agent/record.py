"""Small immutable value classes without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast`` and ``dis``) and
builds each class's methods with ``exec``: with the frozen classes of the
topology, the variables and the settings, about 17 ms of the sensor function's
import on the benchmark machine (a 2-CPU Xeon VM), for a handful of value
classes (issue 15). A :class:`Record` subclass lists its fields in ``__slots__`` and
sets them in an explicit ``__init__`` (through :meth:`Record._fill`);
it gets what ``@dataclass(frozen=True)`` gave it: equality and hashing by
value, the same ``repr``, assignment refused, and :meth:`Record.with_changes`
in place of ``dataclasses.replace``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads the block below; nothing imports typing at run time
if TYPE_CHECKING:
    from typing import Any, Tuple, TypeVar

    R = TypeVar("R", bound="Record")


class Record:
    """A value object: its fields are its ``__slots__``, in ``__init__``'s order."""

    __slots__: Tuple[str, ...] = ()

    def _fill(self, *values: Any) -> None:
        """Set the fields, in ``__slots__`` order: what a subclass's ``__init__`` calls."""
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        same: bool = self._values() == other._values()  # type: ignore[attr-defined]
        return same

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join("{}={!r}".format(name, getattr(self, name)) for name in self.__slots__)
        return "{}({})".format(self.__class__.__qualname__, fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("cannot assign to field {!r}".format(name))

    def __delattr__(self, name: str) -> None:
        raise AttributeError("cannot delete field {!r}".format(name))

    def __reduce__(self) -> Tuple[Any, ...]:
        # copy and pickle would restore slots with setattr, which is refused.
        return (self.__class__, self._values())

    def with_changes(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied, as ``dataclasses.replace`` made one."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(
                "{} has no field {}".format(
                    self.__class__.__name__, ", ".join(repr(n) for n in sorted(unknown))
                )
            )
        values.update(changes)
        cls: Any = self.__class__  # its own __init__ takes the fields by name
        new: R = cls(**values)
        return new
