"""What the tests' V2 nucleus checks in a request, with the SDK's own model classes."""

from __future__ import annotations

import typing
from typing import Any, List, Union


def require(shape: Any, *names: str) -> None:
    from awsiot.greengrasscoreipc import model

    missing = [n for n in names if getattr(shape, n, None) is None]
    if missing:
        raise model.InvalidArgumentsError(message="{} is required".format(", ".join(missing)))


def check_enum(enum: type, name: str, value: Any) -> None:
    from awsiot.greengrasscoreipc import model

    allowed = [v for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, str)]
    if value not in allowed:
        raise model.InvalidArgumentsError(message=f"{name} must be one of {allowed}, got {value!r}")


def check_publish_topic(topic: str) -> None:
    from awsiot.greengrasscoreipc import model

    if not topic or "+" in topic or "#" in topic:
        raise model.InvalidArgumentsError(message=f"invalid publish topic {topic!r}")


def type_problems(shape: Any, path: str = "") -> List[str]:
    """Fields of a decoded request that do not match the model class' annotations."""
    from awsiot.eventstreamrpc import Shape

    hints = typing.get_type_hints(type(shape).__init__)
    problems = []
    for name, hint in hints.items():
        if name == "return":
            continue
        value = getattr(shape, name, None)
        if value is None:
            continue
        if not _conforms(value, hint):
            problems.append(f"{path}{name} must be {_hint_name(hint)}, got {type(value).__name__}")
        elif isinstance(value, Shape):
            problems.extend(type_problems(value, path + name + "."))
    return problems


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if origin is Union:
        return any(_conforms(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not model (callables, datetimes)


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is Union:  # Optional[X] reads as X: None is always allowed
        return " or ".join(_hint_name(a) for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
