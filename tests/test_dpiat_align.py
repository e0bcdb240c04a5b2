"""The DP of method.md section 4: values, tie-breaking, run rules, and C == Python bit for bit."""

import random
from array import array

import pytest

import dpiat.alignment as A
from tests import spec_reference as ref


def run_dp(scores_rows, backend):
    """scores_rows[i][j] = score(source j, target i), 0-based. Returns (value, steps)."""
    n, m = len(scores_rows), len(scores_rows[0])
    flat = array("d", [v for row in scores_rows for v in row])
    div = A._divisors(n)
    if backend == "c":
        if A._dp_c is None:
            pytest.skip("C extension not built")
        value, raw = A._dp_c(flat, n, m, div)
        back = memoryview(raw).cast("i")
    else:
        value, back = A._dp_python(flat, n, m, div)
    return value, A.backtrack(back, n, m)


@pytest.fixture(params=["python", "c"])
def backend(request):
    return request.param


def test_identity_diagonal_is_matched_one_to_one(backend):
    value, steps = run_dp([[1, 0, 0], [0, 1, 0], [0, 0, 1]], backend)
    assert value == 3.0
    assert steps == [("run", 1, 1, 1), ("run", 2, 2, 2), ("run", 3, 3, 3)]


def test_skip_source_wins_ties_with_skip_target(backend):
    # nothing scores: every cell ties at 0; SKIP_SOURCE wins, so the path walks left first (j down to 0)
    value, steps = run_dp([[0, 0], [0, 0]], backend)
    assert value == 0.0
    assert steps == [("skip_target", 1), ("skip_target", 2), ("skip_source", 1), ("skip_source", 2)]


def test_one_source_feeds_a_run_of_targets(backend):
    # one source layer, three identical target layers: a run of 3 scores 3/sqrt(3) = 1.732 > 1
    value, steps = run_dp([[1.0], [1.0], [1.0]], backend)
    assert value == 3 / 3 ** 0.5
    assert steps == [("run", 1, 1, 3)]


def test_equal_runs_prefer_the_shortest(backend):
    # target 2 scores 0, so run T1..T2 (1/sqrt 2) < run T2 alone? no: T2 alone is 0 -> the run must
    # include T1; the best is T1 alone (1.0) vs T1..T2 (0.707): T1 alone, T2 unmatched.
    value, steps = run_dp([[1.0], [0.0]], backend)
    assert value == 1.0
    assert steps == [("run", 1, 1, 1), ("skip_target", 2)]


def test_skip_beats_an_equal_run(backend):
    # source 2 could feed target 1 with the same value as source 1 does; strict '>' keeps the earlier
    # choice (source 1 via the skip of source 2)
    value, steps = run_dp([[1.0, 1.0]], backend)
    assert value == 1.0
    assert steps == [("run", 1, 1, 1), ("skip_source", 2)]


def test_many_to_one_is_impossible(backend):
    # two sources, one target: only one of them may feed it
    value, steps = run_dp([[0.6, 0.9]], backend)
    assert value == 0.9
    assert steps == [("skip_source", 1), ("run", 2, 1, 1)]


def test_run_divisor_is_a_power_not_a_sqrt():
    assert all(A._divisors(60)[L] == L ** 0.5 for L in range(1, 61))


def _random_matrix(rng, n, m):
    # few distinct values so that near-ties and exact ties are common
    vals = [0.0, 0.0, 0.36, 0.5, 1.0, 1 / 3, 0.25, 2.5, 1.7320508075688772]
    return [[rng.choice(vals) for _ in range(m)] for _ in range(n)]


def test_c_and_python_and_the_spec_agree_bit_for_bit():
    rng = random.Random(0)
    for _ in range(300):
        n, m = rng.randint(1, 9), rng.randint(1, 9)
        rows = _random_matrix(rng, n, m)
        vp, sp = run_dp(rows, "python")
        s1 = [[0.0] * (m + 1)] + [[0.0] + row for row in rows]
        vr, back = ref.dp(s1, n, m)
        assert vp == vr  # exact float equality, not approx
        if A._dp_c is not None:
            vc, sc = run_dp(rows, "c")
            assert (vc, sc) == (vp, sp)
        W = m + 1
        _, back_py = A._dp_python(array("d", [v for r in rows for v in r]), n, m, A._divisors(n))
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                b = back[i][j]
                code = {"skip_target": A.SKIP_TARGET, "skip_source": A.SKIP_SOURCE}.get(b[0], b[-1])
                assert back_py[i * W + j] == code
