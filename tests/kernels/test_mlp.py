import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import mlp

SETTINGS = settings(deadline=None, max_examples=60)


def run_forward(genome, sizes, x, bias_per_neuron=False, output_linear=False):
    sizes = np.array(sizes, dtype=np.int64)
    out = np.empty(sizes[-1])
    mlp.forward(genome, sizes, bias_per_neuron, x, out, mlp.forward_buffers(sizes), output_linear)
    return out


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ((5, 5, 5, 2), 63),  # HardMaze
        ((6, 5, 5, 5, 2), 94),  # Curling
        ((20, 5, 5, 20), 228),  # redundant arm
        ((29, 10, 10, 10, 8), 574),  # Ant maze
    ],
)
def test_genome_sizes_of_the_reference_table(sizes, expected):
    assert mlp.genome_size(sizes) == expected


def test_genome_size_with_a_bias_per_neuron():
    # 25 + 5, 25 + 5, 10 + 2
    assert mlp.genome_size((5, 5, 5, 2), bias_per_neuron=True) == 72


def test_genome_layout_row_major_weights_then_one_scalar_bias():
    # 2 -> [1] -> 2: W_in (2x1), b_1, W_out (1x2), b_out.
    genome = np.array([0.5, -1.0, 0.25, 2.0, -3.0, 0.1])
    x = np.array([2.0, 1.0])
    hidden = np.tanh(0.5 * (0.5 * 2.0 - 1.0 * 1.0 + 0.25))
    expected = np.tanh(0.5 * (np.array([2.0, -3.0]) * hidden + 0.1))
    np.testing.assert_allclose(run_forward(genome, (2, 1, 2), x), expected, rtol=1e-14)
    np.testing.assert_allclose(mlp.forward_reference(genome, (2, 1, 2), x), expected, rtol=1e-14)


def test_genome_layout_with_a_bias_per_neuron():
    # 1 -> [2] -> 1: W_in (1x2), b_1 (2), W_out (2x1), b_out (1), linear output.
    genome = np.array([1.0, 2.0, 0.5, -0.5, 3.0, -1.0, 0.25])
    h = np.tanh(0.5 * (np.array([1.0, 2.0]) * 0.3 + [0.5, -0.5]))
    expected = 3.0 * h[0] - 1.0 * h[1] + 0.25
    got = run_forward(genome, (1, 2, 1), np.array([0.3]), True, True)
    np.testing.assert_allclose(got, [expected], rtol=1e-14)


def test_activation_is_two_sigmoid_minus_one():
    genome = np.array([1.0, 0.0])  # 1 -> 1, weight 1, bias 0
    for v in (-30.0, -2.0, -0.1, 0.0, 0.7, 4.0, 30.0):
        sigmoid = 1.0 / (1.0 + np.exp(-v))
        got = run_forward(genome, (1, 1), np.array([v]))
        np.testing.assert_allclose(got, [2.0 * sigmoid - 1.0], rtol=1e-12, atol=1e-15)


@st.composite
def networks(draw):
    n_in = draw(st.integers(1, 8))
    hidden = draw(st.lists(st.integers(1, 8), min_size=0, max_size=3))
    n_out = draw(st.integers(1, 6))
    sizes = (n_in, *hidden, n_out)
    bias_per_neuron = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    genome = rng.normal(0.0, 2.0, mlp.genome_size(sizes, bias_per_neuron))
    x = rng.uniform(-100.0, 100.0, n_in)
    return sizes, bias_per_neuron, genome, x


@SETTINGS
@given(networks(), st.sampled_from(mlp.OUTPUT_ACTIVATIONS))
def test_compiled_forward_matches_the_numpy_reference(net, activation):
    sizes, bias_per_neuron, genome, x = net
    linear = mlp.output_is_linear(activation)
    got = run_forward(genome, sizes, x, bias_per_neuron, linear)
    expected = mlp.forward_reference(genome, sizes, x, bias_per_neuron, activation)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    if not linear:
        assert np.all(np.abs(got) <= 1.0)


def test_reference_accepts_a_batch_of_inputs():
    rng = np.random.default_rng(0)
    genome = rng.normal(size=63)
    xs = rng.uniform(0, 100, (7, 5))
    batch = mlp.forward_reference(genome, (5, 5, 5, 2), xs)
    one_by_one = [mlp.forward_reference(genome, (5, 5, 5, 2), x) for x in xs]
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-14)


def test_check_genomes_names_expected_and_actual_sizes():
    with pytest.raises(ValueError, match=r"genome of size 62.*5->\[5, 5\]->2.*needs 63"):
        mlp.check_genomes(np.zeros((3, 62)), (5, 5, 5, 2))
    with pytest.raises(ValueError, match="needs 72"):
        mlp.check_genomes(np.zeros((3, 63)), (5, 5, 5, 2), bias_per_neuron=True)


def test_check_genomes_rejects_nan_and_infinity_naming_the_row():
    g = np.zeros((4, 63))
    g[2, 5] = np.nan
    with pytest.raises(ValueError, match="genome 2 of the batch contains NaN"):
        mlp.check_genomes(g, (5, 5, 5, 2))
    g[2, 5] = 0.0
    g[3, 0] = -np.inf
    with pytest.raises(ValueError, match="genome 3 of the batch contains an infinite value"):
        mlp.check_genomes(g, (5, 5, 5, 2))


def test_check_genomes_returns_contiguous_float64_rows():
    g = mlp.check_genomes(np.zeros(63, dtype=np.float32), (5, 5, 5, 2))
    assert g.shape == (1, 63)
    assert g.dtype == np.float64
    assert g.flags.c_contiguous


def test_bad_layer_sizes_and_activation_names_are_errors():
    with pytest.raises(ValueError, match="layer sizes"):
        mlp.genome_size((5,))
    with pytest.raises(ValueError, match="layer sizes"):
        mlp.genome_size((5, 0, 2))
    for sizes in ((5, 5.5, 2), (5, 5.0, 2), (5, True, 2), (5, "5", 2)):
        with pytest.raises(ValueError, match="layer sizes must be at least 2 positive integers"):
            mlp.genome_size(sizes)
    assert mlp.genome_size((np.int64(5), np.int32(5), 2)) == 37
    with pytest.raises(ValueError, match="unknown output activation 'relu'"):
        mlp.output_is_linear("relu")
