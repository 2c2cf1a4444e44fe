"""Small immutable value classes without ``dataclasses``, and the cold-start rule they serve.

**The cold-start rule.** The sensor function's start path (what importing
``functions/sensor_function.py`` loads on a core, and what starting it loads: the
V1 runtime, the Sense HAT backends, the health reports) imports neither
``typing``, ``dataclasses`` nor ``inspect`` at run time: on a Pi they cost the
function most of its import time (``typing`` ~4 ms; ``dataclasses`` with
``inspect``, ``ast`` and ``dis`` ~17 ms for the handful of value classes of the
topology, the variables and the settings, on the benchmark machine). So, in
every module on that path:

- types are written for mypy only: ``TYPE_CHECKING = False`` (a plain name, so
  ``typing`` is not imported to get it) and the ``typing`` imports in an ``if
  TYPE_CHECKING:`` block; ``from __future__ import annotations`` keeps
  annotations unevaluated;
- value classes are :class:`Record` subclasses (below), never dataclasses.

The modules on the path are listed once, in ``pyproject.toml``
(``[tool.ruff.lint.per-file-ignores]``: ruff's TID253 refuses a module-level
``typing``, ``dataclasses`` or ``inspect`` import in them), and
``tests/test_cold_start_imports.py`` checks that the list is the path a fresh
interpreter really loads, and that it loads none of those modules.

**Records.** A subclass lists its fields as annotations, with defaults if any,
as a dataclass does; :class:`Record` makes them its ``__slots__`` and gives it
an ``__init__`` taking them in that order (by position or name), equality and
hashing by value, the dataclass ``repr``, assignment refused, and
:meth:`Record.with_changes` in place of ``dataclasses.replace``. A class may
write its own ``__init__`` (a hot path, a default made fresh per instance) and
set its fields with :meth:`Record._fill`. mypy reads the fields through
``dataclass_transform``, so a wrong argument is a type error.
"""

from __future__ import annotations

TYPE_CHECKING = False  # see the rule above
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Dict, Tuple, TypeVar

    from typing_extensions import dataclass_transform

    R = TypeVar("R", bound="Record")
else:

    def dataclass_transform(**_options):  # only mypy needs it
        return lambda cls: cls


@dataclass_transform(eq_default=True, frozen_default=True)
class _RecordType(type):
    """Makes a :class:`Record` subclass's annotated names its fields (``__slots__``)."""

    def __new__(mcs, name: str, bases: Tuple[type, ...], namespace: Dict[str, Any]) -> _RecordType:
        own = tuple(n for n in namespace.get("__annotations__", {}) if not n.startswith("_"))
        inherited: Tuple[str, ...] = ()
        defaults: Dict[str, Any] = {}
        for base in bases:
            inherited += getattr(base, "_fields", ())
            defaults.update(getattr(base, "_defaults", {}))
        for field in own:
            if field in namespace:  # a default: a class attribute would clash with the slot
                defaults[field] = namespace.pop(field)
        namespace["__slots__"] = own
        namespace["_fields"] = inherited + own
        namespace["_defaults"] = defaults
        cls: _RecordType = super().__new__(mcs, name, bases, namespace)
        return cls


class Record(metaclass=_RecordType):
    """A value object: its fields are its annotations, in ``__init__``'s order."""

    _fields: ClassVar[Tuple[str, ...]]
    _defaults: ClassVar[Dict[str, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(
                "{}() takes {} arguments, {} given".format(
                    self.__class__.__name__, len(fields), len(args)
                )
            )
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(
                    "{}() got an unexpected keyword argument {!r}".format(
                        self.__class__.__name__, key
                    )
                )
            if key in values:
                raise TypeError(
                    "{}() got multiple values for argument {!r}".format(
                        self.__class__.__name__, key
                    )
                )
            values[key] = value
        defaults = self._defaults
        for name in fields:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = defaults[name]
            else:
                raise TypeError(
                    "{}() missing required argument {!r}".format(self.__class__.__name__, name)
                )
            object.__setattr__(self, name, value)

    def _fill(self, *values: Any) -> None:
        """Set the fields in their order: what a subclass's own ``__init__`` calls."""
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        same: bool = self._values() == other._values()  # type: ignore[attr-defined]
        return same

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join("{}={!r}".format(name, getattr(self, name)) for name in self._fields)
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
        values = {name: getattr(self, name) for name in self._fields}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(
                "{} has no field {}".format(
                    self.__class__.__name__, ", ".join(repr(n) for n in sorted(unknown))
                )
            )
        values.update(changes)
        cls: Callable[..., R] = self.__class__  # its __init__ takes the fields by name
        return cls(**values)
