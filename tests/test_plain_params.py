"""The worker's shortcut for params of plain scalars: whenever it answers, its answer is
what pydantic's validation gives; otherwise validation decides."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest

from runtime.registry import TaskEntry
from runtime.validation import scalar_params, validate


class Plain(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    a: int
    b: str = "x"
    c: float | None = None
    d: bool = False
    e: int | None = 3


def entry(model: type[pydantic.BaseModel]) -> TaskEntry:
    return TaskEntry("s", "t", "m", "f", "default", 60, "", model)


@pytest.mark.parametrize(
    "params",
    [
        {"a": 1},
        {"a": 1, "b": "y", "c": 2.5, "d": True, "e": None},
        {"a": -(2**80), "c": None},
        {"a": 1, "c": 2},  # an int for a float: pydantic converts it
        {"a": True},  # a bool for an int
        {"a": "1"},  # text for an int
        {"a": 1, "b": "é"},  # non-ASCII text: the strict-JSON check decides
        {"a": 1, "c": float("nan")},
        {"a": 2**20000},
        {"a": 1, "zz": 0},  # unknown
        {"b": "y"},  # missing
        {"a": [1]},
        {},
        [],
    ],
)
def test_the_shortcut_agrees_with_validation(params: Any) -> None:
    scalars = scalar_params(Plain)
    assert scalars is not None
    quick = scalars.values(params)
    try:
        model = validate(entry(Plain), params)
    except Exception:
        assert quick is None
        return
    if quick is not None:
        assert quick == dict(model)
        assert [type(v) for v in quick.values()] == [type(v) for v in dict(model).values()]


def test_models_it_cannot_judge_are_left_to_pydantic() -> None:
    class Constrained(pydantic.BaseModel):
        a: Annotated[int, pydantic.Field(ge=0)]

    class Aliased(pydantic.BaseModel):
        a: int = pydantic.Field(alias="b")

    class Checked(pydantic.BaseModel):
        a: int

        @pydantic.field_validator("a")
        @classmethod
        def positive(cls, value: int) -> int:
            return abs(value)

    class Stripping(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(str_strip_whitespace=True)
        a: str

    class Listed(pydantic.BaseModel):
        a: list[int]

    for model in (Constrained, Aliased, Checked, Stripping, Listed):
        assert scalar_params(model) is None, model


def test_params_in_their_fields_types_skip_pydantic() -> None:
    scalars = scalar_params(Plain)
    assert scalars is not None
    assert scalars.values({"a": 1, "c": 2.5, "e": None}) == {
        "a": 1, "b": "x", "c": 2.5, "d": False, "e": None
    }
