"""Hybrid logical clocks: monotonic ticks, bounded observes, capped effective timestamps."""

from __future__ import annotations

import pytest
from conftest import T0_MS, scaled_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from hbw_sync import hlc

DAY = 24 * 3600 * 1000
SKEW = hlc.DEFAULT_MAX_SKEW_MS


def test_pack_unpack_round_trip_and_bounds():
    for ms, logical in ((0, 0), (1, 0), (0, 1), (T0_MS, 7), (hlc.MAX_MS, hlc.LOGICAL_MASK)):
        ts = hlc.pack(ms, logical)
        assert hlc.unpack(ts) == (ms, logical)
        assert hlc.wall_ms(ts) == ms
        assert 0 <= ts <= hlc.MAX_HLC
    assert hlc.pack(hlc.MAX_MS, hlc.LOGICAL_MASK) == hlc.MAX_HLC
    assert hlc.pack(1) == 1 << 16
    for bad in ((-1, 0), (hlc.MAX_MS + 1, 0), (0, -1), (0, hlc.LOGICAL_MASK + 1)):
        with pytest.raises(ValueError):
            hlc.pack(*bad)


def test_packing_orders_like_the_pair():
    assert hlc.pack(5, hlc.LOGICAL_MASK) < hlc.pack(6, 0)
    assert hlc.pack(5, 1) < hlc.pack(5, 2)


def test_tick_follows_the_wall_clock():
    t1 = hlc.tick(0, T0_MS)
    assert t1 == hlc.pack(T0_MS)
    t2 = hlc.tick(t1, T0_MS + 5)
    assert t2 == hlc.pack(T0_MS + 5)


def test_tick_monotonic_when_the_wall_clock_goes_backwards():
    t = hlc.tick(0, T0_MS)
    seen = [t]
    for now in (T0_MS - 1, T0_MS - DAY, 0, -5, T0_MS, T0_MS):
        t = hlc.tick(t, now)
        seen.append(t)
    assert all(a < b for a, b in zip(seen, seen[1:]))
    assert hlc.wall_ms(seen[-1]) == T0_MS  # the logical counter took the strain
    assert hlc.unpack(seen[-1])[1] == len(seen) - 1


def test_tick_logical_overflow_carries_into_the_milliseconds():
    last = hlc.pack(T0_MS, hlc.LOGICAL_MASK)
    nxt = hlc.tick(last, T0_MS)
    assert nxt > last and hlc.unpack(nxt) == (T0_MS + 1, 0)


def test_tick_clamps_absurd_wall_times():
    assert hlc.tick(0, -10**9) == 1  # never 0: 0 is not a valid op timestamp
    assert hlc.tick(0, 10**20) == hlc.pack(hlc.MAX_MS)


def test_tick_saturates_instead_of_leaving_64_bits():
    assert hlc.tick(hlc.MAX_HLC - 1, T0_MS) == hlc.MAX_HLC
    with pytest.raises(ValueError):
        hlc.tick(hlc.MAX_HLC, T0_MS)
    c = hlc.Clock(last=hlc.MAX_HLC)
    with pytest.raises(ValueError):
        c.now(T0_MS)
    assert c.last == hlc.MAX_HLC


def test_observe_takes_a_peer_that_is_slightly_ahead():
    last = hlc.pack(T0_MS)
    remote = hlc.pack(T0_MS + 60_000, 3)
    state = hlc.observe(last, remote, T0_MS)
    assert state == remote
    assert hlc.tick(state, T0_MS) > remote


def test_observe_never_jumps_beyond_now_plus_skew():
    last = hlc.pack(T0_MS)
    for remote in (hlc.pack(T0_MS + 3 * DAY), hlc.MAX_HLC, hlc.pack(T0_MS + SKEW + 1)):
        state = hlc.observe(last, remote, T0_MS)
        assert state == hlc.skew_bound(T0_MS)
        assert hlc.wall_ms(state) == T0_MS + SKEW
    assert hlc.observe(last, hlc.pack(T0_MS + 3 * DAY), T0_MS, max_skew_ms=1000) == hlc.pack(T0_MS + 1000, hlc.LOGICAL_MASK)
    # an older peer leaves the clock alone
    assert hlc.observe(last, hlc.pack(T0_MS - DAY), T0_MS) == last


def test_observe_keeps_a_clock_already_ahead():
    ahead = hlc.pack(T0_MS + 2 * DAY)  # our own clock was set wrong earlier
    assert hlc.observe(ahead, hlc.pack(T0_MS + 3 * DAY), T0_MS) == ahead


def test_skew_bound_clamps():
    assert hlc.skew_bound(hlc.MAX_MS) == hlc.MAX_HLC
    assert hlc.skew_bound(-10 * SKEW) == hlc.pack(0, hlc.LOGICAL_MASK)


def test_effective_caps_a_far_future_op():
    future = hlc.pack(T0_MS + 5 * DAY)
    assert hlc.effective(future, T0_MS) == hlc.skew_bound(T0_MS)
    assert hlc.wall_ms(hlc.effective(future, T0_MS)) == T0_MS + SKEW
    assert hlc.effective(future, None) == future  # not relayed yet: face value
    honest = hlc.pack(T0_MS - 1000, 4)
    assert hlc.effective(honest, T0_MS) == honest
    just_inside = hlc.pack(T0_MS + SKEW, hlc.LOGICAL_MASK)
    assert hlc.effective(just_inside, T0_MS) == just_inside
    assert hlc.effective(just_inside + 1, T0_MS) == just_inside
    assert hlc.effective(future, T0_MS, max_skew_ms=0) == hlc.pack(T0_MS, hlc.LOGICAL_MASK)


def test_clock_object():
    c = hlc.Clock()
    a = c.now(T0_MS)
    b = c.now(T0_MS - DAY)
    assert b > a == hlc.pack(T0_MS)
    c.observe(hlc.pack(T0_MS + 5 * DAY), T0_MS)
    assert c.last == hlc.skew_bound(T0_MS)
    assert c.now(T0_MS) == hlc.skew_bound(T0_MS) + 1
    small = hlc.Clock(max_skew_ms=10)
    small.observe(hlc.pack(T0_MS + DAY), T0_MS)
    assert small.last == hlc.pack(T0_MS + 10, hlc.LOGICAL_MASK)


_ms = st.integers(T0_MS - 30 * DAY, T0_MS + 30 * DAY)
_event = st.one_of(
    st.tuples(st.just("tick"), _ms, st.just(0)),
    st.tuples(st.just("observe"), _ms, st.integers(0, hlc.MAX_HLC)),
    st.tuples(st.just("observe"), _ms, _ms.map(hlc.pack)),
)


@settings(max_examples=scaled_examples(200))
@given(st.lists(_event, min_size=1, max_size=60), st.integers(0, 2 * DAY))
def test_ticks_and_observes_always_increase_and_stay_bounded(events, skew):
    clock = hlc.Clock(max_skew_ms=skew)
    stamps = []
    last_state = clock.last
    ceiling = 0  # the furthest any observe may have pushed us
    for what, now, remote in events:
        if what == "tick":
            ts = clock.now(now)
            assert ts > last_state
            assert hlc.wall_ms(ts) >= now or ts == last_state + 1
            stamps.append(ts)
        else:
            clock.observe(remote, now)
            assert clock.last >= last_state
            assert clock.last <= max(last_state, hlc.skew_bound(now, skew))
            ceiling = max(ceiling, min(remote, hlc.skew_bound(now, skew)))
            assert clock.now(now) > ceiling  # the next event orders after what was seen
            stamps.append(clock.last)
        last_state = clock.last
    assert all(a < b for a, b in zip(stamps, stamps[1:]))


@settings(max_examples=scaled_examples(200))
@given(st.integers(0, hlc.MAX_MS), st.integers(0, hlc.LOGICAL_MASK))
def test_hypothesis_pack_unpack(ms, logical):
    assert hlc.unpack(hlc.pack(ms, logical)) == (ms, logical)


@settings(max_examples=scaled_examples(200))
@given(st.integers(1, hlc.MAX_HLC), st.none() | st.integers(0, hlc.MAX_MS), st.integers(0, 30 * DAY))
def test_effective_is_a_cap(ts, received, skew):
    e = hlc.effective(ts, received, skew)
    assert e <= ts
    if received is not None:
        assert e <= hlc.skew_bound(received, skew)
        assert e == ts or e == hlc.skew_bound(received, skew)
    else:
        assert e == ts
