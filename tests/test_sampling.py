import random

import numpy as np
import pytest

from effvid.data import (dense_indices, dense_test_clips, segment_bounds, segment_indices,
                         test_clips)


def test_segment_bounds_partition():
    assert segment_bounds(80, 8) == [(i * 10, i * 10 + 10) for i in range(8)]
    b = segment_bounds(30, 8)
    assert b[0][0] == 0 and b[-1][1] == 30
    assert all(b[k][1] == b[k + 1][0] for k in range(7))


def test_segment_train_within_bounds_and_deterministic():
    for n, t in [(80, 8), (100, 8), (9, 8), (300, 16)]:
        bounds = segment_bounds(n, t)
        for seed in range(20):
            idx = segment_indices(n, t, train=True, rng=np.random.default_rng(seed))
            assert len(idx) == t
            assert all(s <= i < e for i, (s, e) in zip(idx, bounds))
            assert idx == sorted(idx)
    a = segment_indices(100, 8, True, np.random.default_rng(3))
    assert a == segment_indices(100, 8, True, np.random.default_rng(3))
    assert a == [x for x in a]  # plain ints
    assert all(type(x) is int for x in a)
    r1 = segment_indices(100, 8, True, random.Random(5))
    assert r1 == segment_indices(100, 8, True, random.Random(5))
    # training really randomises: many seeds cover the whole first segment
    firsts = {segment_indices(80, 8, True, np.random.default_rng(s))[0] for s in range(200)}
    assert firsts == set(range(10))


def test_segment_test_centres():
    assert segment_indices(80, 8, train=False) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_indices(100, 8, train=False) == [6, 18, 31, 43, 56, 68, 81, 93]


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_short_videos_repeat_frames(n):
    for train in (True, False):
        idx = segment_indices(n, 8, train, np.random.default_rng(0))
        assert len(idx) == 8 and idx == sorted(idx)
        assert all(0 <= i < n for i in idx)
        assert set(idx) == set(range(n))  # every frame is used, some twice
    assert segment_indices(4, 8, False) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_test_clips_multi_and_twice():
    assert test_clips(80, 8) == [[5, 15, 25, 35, 45, 55, 65, 75]]
    two = test_clips(80, 8, num_clips=2)
    assert two == [[2, 12, 22, 32, 42, 52, 62, 72], [7, 17, 27, 37, 47, 57, 67, 77]]
    tw = test_clips(80, 8, twice=True)
    assert tw == [[5, 15, 25, 35, 45, 55, 65, 75], [0, 10, 20, 30, 40, 50, 60, 70]]
    five = test_clips(80, 8, num_clips=5)
    assert [c[0] for c in five] == [1, 3, 5, 7, 9]
    for c in test_clips(5, 8, num_clips=3, twice=True):
        assert all(0 <= i < 5 for i in c) and c == sorted(c)


def test_dense_sampling():
    # training: stride 64/8 = 8 from a random start in [0, N - 64]
    for seed in range(20):
        idx = dense_indices(200, 8, 64, True, np.random.default_rng(seed))
        s = idx[0]
        assert 0 <= s <= 136
        assert idx == [s + 8 * k for k in range(8)]
    starts = {dense_indices(70, 8, 64, True, np.random.default_rng(s))[0] for s in range(100)}
    assert starts == set(range(7))
    assert dense_indices(200, 8, 64, False) == [68 + 8 * k for k in range(8)]
    # short video: the window shrinks to the video, no wrap-around
    short = dense_indices(20, 8, 64, True, np.random.default_rng(0))
    assert short == [0, 2, 5, 7, 10, 12, 15, 17]
    assert dense_indices(3, 8, 64, False) == [0, 0, 0, 1, 1, 1, 2, 2]


def test_dense_test_clips():
    clips = dense_test_clips(200, 8, 64, num_clips=10)
    assert len(clips) == 10
    starts = [c[0] for c in clips]
    assert starts[0] == 0 and starts[-1] == 136
    assert np.all(np.diff(starts) > 0)
    assert all(c == [c[0] + 8 * k for k in range(8)] for c in clips)
    assert dense_test_clips(200, 8, 64, num_clips=1) == [dense_indices(200, 8, 64, False)]


@pytest.mark.parametrize("t", [3, 8, 12, 16])
def test_test_clips_are_the_originals(t):
    # TSNDataSet._get_test_indices (0-based): centres, and with twice_sample the starts too
    for n in range(1, 300):
        tick = n / float(t)
        centres = [int(tick / 2.0 + tick * x) for x in range(t)]
        starts = [int(tick * x) for x in range(t)]
        assert test_clips(n, t, twice=True) == [centres, starts], n


def _original_dense_test(n, t):
    # TSNDataSet._get_test_indices with dense_sample (0-based), for videos of >= 64 frames
    starts = np.linspace(0, max(1, 1 + n - 64) - 1, num=10, dtype=int)
    return [[(k * (64 // t) + s) % n for k in range(t)] for s in starts.tolist()]


@pytest.mark.parametrize("n,t", [(74, 8), (100, 16), (333, 8), (80, 12), (64, 12), (1000, 6)])
def test_dense_test_clips_are_the_originals(n, t):
    # starts rounded down (74 frames: 0,1,2,3,4,5,6,7,8,10, not ...,4,6,7,8,9,10) and the
    # integer stride 64 // T (T=12: 5, not 5.33)
    assert dense_test_clips(n, t, 64, num_clips=10) == _original_dense_test(n, t)


def test_bad_arguments():
    with pytest.raises(ValueError):
        segment_indices(0, 8, False)
    with pytest.raises(ValueError):
        segment_indices(10, 0, False)
    with pytest.raises(ValueError):
        test_clips(10, 8, num_clips=0)
