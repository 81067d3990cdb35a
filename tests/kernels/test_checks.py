import numpy as np
import pytest

from kernels.checks import check_int, finite_action


def test_check_int_accepts_python_and_numpy_integers():
    assert check_int("n", 3) == 3
    out = check_int("n", np.int64(5), low=5)
    assert out == 5 and type(out) is int


@pytest.mark.parametrize("value", [True, 2.0, "3", None, 0, -1])
def test_check_int_refuses_non_integers_and_small_values(value):
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got "):
        check_int("n", value)


def test_check_int_raises_the_callers_error_class():
    class MyError(ValueError):
        pass

    with pytest.raises(MyError, match="size must be an integer >= 8, got 7"):
        check_int("size", 7, low=8, error=MyError)


def test_finite_action_reshapes_and_converts():
    out = finite_action("Curling", np.array([[0.5, -2]], dtype=np.float32), 2, "joint speeds")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.5, -2.0])


@pytest.mark.parametrize(
    "action", [[1.0, np.nan], [0.0, np.inf], [1.0, 2.0, 3.0], [1.0], None, "ab", [[1, 2], [3, 4]]]
)
def test_finite_action_errors_name_the_environment(action):
    with pytest.raises(ValueError, match=r"^Curling: action must be 2 finite joint speeds, got "):
        finite_action("Curling", action, 2, "joint speeds")
