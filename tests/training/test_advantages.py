"""Group advantages against a hand-worked group.

Guards: the unbiased std (n - 1), the 1e-4 in the denominator, the per-group (not batch) statistics,
and the zero-spread rule (0, never NaN).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.tolerances import tol
from training.advantages import group_advantages


def test_hand_worked_group():
    # rewards 1, 2, 3, 6: mean 3; deviations -2, -1, 0, 3; unbiased var (4 + 1 + 0 + 9) / 3 = 14/3
    std = math.sqrt(14 / 3)
    expected = torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (std + 1e-4)
    torch.testing.assert_close(group_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), 4), expected, **tol("advantages"))


def test_groups_are_independent_and_prompt_major():
    # group 0 = (0, 2): mean 1, unbiased std sqrt(2); group 1 = (10, 10): zero spread -> 0
    got = group_advantages(torch.tensor([0.0, 2.0, 10.0, 10.0]), 2)
    a = 1 / (math.sqrt(2) + 1e-4)
    torch.testing.assert_close(got, torch.tensor([-a, a, 0.0, 0.0]), **tol("advantages"))


@pytest.mark.parametrize("value", [0.0, -5.5, 0.1, 1e6])
def test_zero_spread_gives_exact_zero(value):
    got = group_advantages(torch.full((8,), value), 4)
    assert torch.equal(got, torch.zeros(8))


def test_group_of_one_is_zero_not_nan():
    assert torch.equal(group_advantages(torch.tensor([1.0, -3.0]), 1), torch.zeros(2))


def test_errors():
    with pytest.raises(ValueError, match="multiple of group_size 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="Invalid group_size"):
        group_advantages(torch.zeros(4), 0)
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([0.0, float("nan")]), 2)
