"""Record: value classes as dataclasses made them, from their annotations, without dataclasses."""

from __future__ import annotations

import copy
import pickle
from typing import Optional, Tuple

import pytest

from agent.record import Record


class Limits(Record):
    metric: str
    upper: Optional[float]
    hysteresis: float = 1.0
    tags: Tuple[str, ...] = ()


class Named(Limits):
    name: str = "x"


class Scaled(Record):
    value: float

    def __init__(self, value: float) -> None:  # its own __init__, taking the fields by name
        self._fill(round(value, 1))


def test_the_annotations_are_the_fields_in_order_with_their_defaults():
    limits = Limits("humidity", 50.0)
    assert (limits.metric, limits.upper, limits.hysteresis, limits.tags) == (
        "humidity",
        50.0,
        1.0,
        (),
    )
    assert Limits.__slots__ == ("metric", "upper", "hysteresis", "tags")
    assert Limits(upper=50.0, metric="humidity", tags=("a",)).tags == ("a",)
    assert not hasattr(limits, "__dict__")  # slots only: small, and no stray attribute


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("humidity",), {}, "Limits() missing required argument 'upper'"),
        (("humidity", 1.0, 2.0, (), 5), {}, "Limits() takes 4 arguments, 5 given"),
        (("humidity", 1.0), {"limit": 3}, "Limits() got an unexpected keyword argument 'limit'"),
        (("humidity", 1.0), {"metric": "t"}, "Limits() got multiple values for argument 'metric'"),
    ],
)
def test_a_wrong_call_is_a_type_error_naming_the_argument(args, kwargs, message):
    with pytest.raises(TypeError) as raised:
        Limits(*args, **kwargs)
    assert str(raised.value) == message


def test_equal_by_value_hashable_and_printed_as_a_dataclass():
    assert Limits("humidity", 50.0) == Limits("humidity", 50.0, 1.0, ())
    assert Limits("humidity", 50.0) != Limits("humidity", 51.0)
    assert Limits("humidity", 50.0) != Named("humidity", 50.0)  # another class, never equal
    assert len({Limits("humidity", 50.0), Limits("humidity", 50.0)}) == 1
    assert repr(Limits("humidity", None)) == (
        "Limits(metric='humidity', upper=None, hysteresis=1.0, tags=())"
    )


def test_fields_cannot_be_changed_only_copied_with_changes():
    limits = Limits("humidity", 50.0)
    with pytest.raises(AttributeError, match="cannot assign to field 'upper'"):
        limits.upper = 60.0
    with pytest.raises(AttributeError, match="cannot delete field 'upper'"):
        del limits.upper
    assert limits.with_changes(upper=60.0) == Limits("humidity", 60.0)
    assert limits.upper == 50.0
    with pytest.raises(TypeError, match="Limits has no field 'limit', 'low'"):
        limits.with_changes(limit=1.0, low=2.0)


def test_copies_and_pickles_keep_the_values():
    limits = Named("humidity", 50.0, name="kitchen")
    assert copy.copy(limits) == limits and copy.deepcopy(limits) == limits
    assert pickle.loads(pickle.dumps(limits)) == limits


def test_a_subclass_adds_its_fields_after_its_parents():
    named = Named("humidity", 50.0, 2.0, (), "kitchen")
    assert Named._fields == ("metric", "upper", "hysteresis", "tags", "name")
    assert named.name == "kitchen" and named.hysteresis == 2.0
    assert Named("humidity", 50.0).name == "x"


def test_a_class_may_write_its_own_init():
    assert Scaled(12.345).value == 12.3
    assert Scaled(12.345) == Scaled(12.3) and repr(Scaled(1.04)) == "Scaled(value=1.0)"
    assert Scaled(1.0).with_changes(value=2.26).value == 2.3  # through its own __init__
