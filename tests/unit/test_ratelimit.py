import pytest

from progresscast.ratelimit import BucketMap, TokenBucket

from .fakes import FakeClock


def test_a_bucket_allows_its_burst_then_its_rate():
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token back
    assert bucket.take() and not bucket.take()
    clock.advance(100)  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(20)) == 5


def test_sustained_rate_is_bounded():
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=20, burst=40, clock=clock)
    allowed = 0
    for _ in range(10_000):  # 1,000 requests/s for 10 s
        clock.advance(0.001)
        allowed += bucket.take()
    assert allowed == pytest.approx(40 + 20 * 10, abs=2)


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (1, 0)])
def test_bad_settings(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_bucket_map_keeps_keys_apart_and_bounded():
    clock = FakeClock(0.0)
    buckets = BucketMap(rate=1, burst=2, max_keys=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [True, True, False]
    assert buckets.take("b")  # another key has its own bucket
    for key in "cde":
        buckets.take(key)
    assert len(buckets._buckets) == 3  # least recently used forgotten
    assert buckets.take("a")  # forgotten, so it starts full again
