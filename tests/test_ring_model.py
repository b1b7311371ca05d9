"""Sequences of ring operations, checked against a plain Python model of the ring."""

import os

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from engine import Ring


class Model:
    """What the ring must do, with sets and counters instead of atomics."""

    def __init__(self, slots, kinds, lookback):
        self.slots, self.kinds, self.lookback = slots, kinds, lookback
        self.nstages = len(kinds) - 1  # kinds[0] is the producer
        self.head = 0  # claimed
        self.pub = 0  # published
        self.end = None
        self.claimed = [0] * (self.nstages + 1)  # handed out per stage
        self.done_upto = [0] * (self.nstages + 1)  # ordered stages: frontier
        self.finished = [set() for _ in range(self.nstages + 1)]  # pool stages
        self.items = [0] * (self.nstages + 1)
        self.failed = set()

    def is_finished(self, k, s):
        if k == 0:
            return s < self.pub
        if self.kinds[k] == "ordered":
            return s < self.done_upto[k]
        return s in self.finished[k]

    def frontier(self):
        f = 0
        while f < self.pub and self.is_finished(self.nstages, f):
            f += 1
        return f

    def can_claim(self, n):
        return self.head + n + self.lookback <= self.frontier() + self.slots

    def ready(self, k, max_n):
        c, n = self.claimed[k], 0
        while n < max_n and self.is_finished(k - 1, c + n):
            n += 1
        return n

    def held(self, k):
        """Items stage k handed out and has not finished."""
        lo = (
            self.done_upto[k]
            if self.kinds[k] == "ordered"
            else max(0, self.claimed[k] - self.slots)
        )
        return [s for s in range(lo, self.claimed[k]) if not self.is_finished(k, s)]

    def finish(self, k, s):
        if self.kinds[k] == "ordered":
            assert s == self.done_upto[k]
            self.done_upto[k] += 1
        else:
            self.finished[k].add(s)
        self.items[k] += 1


configs = st.tuples(
    st.sampled_from([2, 4, 8]),
    st.lists(st.sampled_from(["pool", "ordered"]), min_size=1, max_size=3),
    st.integers(0, 3),
)


class RingMachine(RuleBasedStateMachine):
    @initialize(config=configs)
    def create(self, config):
        slots, stages, lookback = config
        lookback = min(lookback, slots - 1)
        self.ring = Ring.create(slots=slots, slot_bytes=16, stages=tuple(stages), lookback=lookback)
        self.model = Model(slots, ["producer", *stages], lookback)
        self.producer_ever = False

    def teardown(self):
        if hasattr(self, "ring"):
            self.ring.close()
            self.ring.unlink()

    def payload(self, s):
        return int(self.ring.view(s, shape=(2,), dtype=np.uint64)[0])

    @rule(n=st.integers(1, 8))
    def claim(self, n):
        m = self.model
        if n + m.lookback > m.slots:
            with pytest.raises(ValueError):
                self.ring.claim(n, timeout=0)
        elif m.end is not None:
            with pytest.raises(RuntimeError, match="ended"):
                self.ring.claim(n, timeout=0)
        elif not m.can_claim(n):
            with pytest.raises(TimeoutError):
                self.ring.claim(n, timeout=0)
        else:
            seq = self.ring.claim(n, timeout=0)
            self.producer_ever = True
            assert seq == m.head
            v = self.ring.views(seq, n, shape=(2,), dtype=np.uint64)
            v[:, 0] = np.arange(seq, seq + n)
            v[:, 1] = 0
            m.head += n

    @rule(n=st.integers(1, 8))
    def publish(self, n):
        m = self.model
        if n <= m.head - m.pub:
            self.ring.publish(m.pub, n)
            m.pub += n
            m.items[0] += n
        else:
            with pytest.raises(ValueError):
                self.ring.publish(m.pub, n)

    @rule()
    def abandon(self):
        m = self.model
        if m.head == m.pub and not self.producer_ever:
            return  # this handle has not become the producer yet
        self.ring.abandon()
        m.head = m.pub  # claimed, unpublished items are given back

    @precondition(lambda self: self.model.end is None)
    @rule()
    def end(self):
        self.ring.end()
        self.producer_ever = True
        m = self.model
        m.end = m.pub
        m.head = m.pub  # claimed, unpublished items are abandoned

    @rule(data=st.data(), max_n=st.integers(1, 8))
    def take(self, data, max_n):
        m = self.model
        k = data.draw(st.integers(1, m.nstages), label="stage")
        n = m.ready(k, max_n)
        if n:
            seq, got = self.ring.take(k, max_n=max_n, timeout=0)
            assert (seq, got) == (m.claimed[k], n)
            for s in range(seq, seq + n):
                assert self.payload(s) == s
            m.claimed[k] += n
        elif m.end is not None and m.claimed[k] >= m.end:
            with pytest.raises(EOFError):
                self.ring.take(k, max_n=max_n, timeout=0)
        else:
            with pytest.raises(TimeoutError):
                self.ring.take(k, max_n=max_n, timeout=0)

    @rule(data=st.data())
    def done(self, data):
        m = self.model
        k = data.draw(st.integers(1, m.nstages), label="stage")
        held = m.held(k)
        if not held:
            with pytest.raises(ValueError, match="not held"):
                self.ring.done(k, m.claimed[k])
            return
        if m.kinds[k] == "ordered":
            n = data.draw(st.integers(1, len(held)), label="n")
            seq = held[0]
        else:
            seq = data.draw(st.sampled_from(held), label="seq")
            n = 1
            while seq + n in held and data.draw(st.booleans(), label="longer"):
                n += 1
        self.ring.done(k, seq, n)
        for s in range(seq, seq + n):
            m.finish(k, s)

    @rule(data=st.data())
    def done_not_held(self, data):
        m = self.model
        k = data.draw(st.integers(1, m.nstages), label="stage")
        held = set(m.held(k))
        seq = data.draw(st.integers(0, m.head + 2), label="seq")
        if seq not in held:
            with pytest.raises(ValueError, match="not held"):
                self.ring.done(k, seq)

    @rule()
    def reclaim_of_a_live_pid_is_refused(self):
        with pytest.raises(RuntimeError, match="live process"):
            self.ring.reclaim(os.getpid())

    @rule()
    def reopen(self):
        """Closing a handle moves on, flagged failed, every item it holds at any
        stage, and abandons its claimed, unpublished items; a new handle carries on."""
        m = self.model
        new = Ring.open(self.ring.name)
        self.ring.close()
        self.ring = new
        self.producer_ever = False
        for k in range(1, m.nstages + 1):
            for s in m.held(k):
                m.finish(k, s)
                m.failed.add(s)
        m.head = m.pub

    @invariant()
    def counters_match(self):
        if not hasattr(self, "ring"):
            return
        m = self.model
        for k, s in enumerate(self.ring.stats()):
            assert s["items"] == m.items[k], f"stage {k}"
            assert s["taken"] == (m.head if k == 0 else m.claimed[k]), f"stage {k}"
        for k in range(1, m.nstages + 1):
            assert self.ring.ready(k) == m.ready(k, m.slots)

    @invariant()
    def items_in_flight_and_lookback_intact(self):
        """Every item not yet released by the last stage, and the `lookback` items
        before the oldest of them, still hold their payload."""
        if not hasattr(self, "ring"):
            return
        m = self.model
        first = max(0, m.frontier() - m.lookback)
        for s in range(first, m.pub):
            assert self.payload(s) == s
            assert self.ring.failed(s) == (s in m.failed)


RingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestRingModel = RingMachine.TestCase
