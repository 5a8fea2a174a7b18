from __future__ import annotations

import math

import pytest

from kling_gateway.domain.numbers import whole_number, whole_or_default
from kling_gateway.protocol.errors import BadRequest


def test_whole_numbers_in_range_pass_as_ints() -> None:
    assert whole_number("field `n`", 5.0, 1, 10) == 5
    assert whole_or_default("field `n`", None, 1, 10, 7) == 7


@pytest.mark.parametrize("value", [0, 11, 2.5, math.inf, -math.inf, math.nan])
def test_anything_else_is_a_400_naming_the_field(value: float) -> None:
    with pytest.raises(BadRequest, match="field `n` must be a whole number from 1 to 10"):
        whole_number("field `n`", value, 1, 10)
