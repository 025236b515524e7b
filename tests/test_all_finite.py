"""dsp.ranges.all_finite: exact on NaN, inf, and finite values whose sum overflows."""

import pytest
import torch

from dsp.ranges import all_finite, check_audio


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_detects_each_kind_of_non_finite_value(dtype):
    x = torch.zeros(2, 2, 1000, dtype=dtype)
    assert all_finite(x)
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[1, 0, 777] = bad
        assert not all_finite(y)
    y = x.clone()
    y[0, 0, 1] = float("inf")
    y[0, 1, 2] = float("-inf")  # inf + -inf = NaN: still caught
    assert not all_finite(y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_finite_values_whose_sum_overflows_are_finite(dtype):
    big = torch.finfo(dtype).max / 2
    x = torch.full((1, 2, 64), big, dtype=dtype)
    assert not bool(torch.isfinite(x.sum()))  # the fast path's sum overflows ...
    assert all_finite(x)                      # ... and the answer is still exact
    check_audio(x)
    x[0, 1, 5] = float("nan")
    assert not all_finite(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        check_audio(x)
