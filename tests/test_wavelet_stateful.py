"""Stateful test: build random structures, query them, round-trip them, against a list model."""

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wavelet import WaveletMatrix, WaveletTree


class SequenceMachine(RuleBasedStateMachine):
    @initialize(
        seq=st.lists(st.integers(0, 2**20), max_size=300),
        kind=st.sampled_from(["wm", "balanced", "huffman"]),
    )
    def build(self, seq, kind):
        self.model = list(seq)
        self.kind = kind
        self._rebuild()

    def _rebuild(self):
        arr = np.array(self.model, dtype=np.uint32)
        self.s = WaveletMatrix(arr) if self.kind == "wm" else WaveletTree(arr, shape=self.kind)

    @rule(extra=st.lists(st.integers(0, 2**20), min_size=1, max_size=50))
    def append_and_rebuild(self, extra):
        self.model += extra
        self._rebuild()

    @rule()
    def roundtrip(self):
        self.s = type(self.s).from_bytes(self.s.to_bytes())

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def point_queries(self, data):
        n = len(self.model)
        i = data.draw(st.integers(0, n - 1))
        assert self.s[i] == self.model[i]
        c = data.draw(st.sampled_from(self.model))
        j = data.draw(st.integers(0, n))
        assert self.s.rank(c, j) == self.model[:j].count(c)
        k = data.draw(st.integers(0, self.model.count(c) - 1))
        assert self.s.select(c, k) == [p for p, v in enumerate(self.model) if v == c][k]

    @precondition(lambda self: self.model and self.kind == "wm")
    @rule(data=st.data())
    def range_queries(self, data):
        n = len(self.model)
        l = data.draw(st.integers(0, n - 1))
        r = data.draw(st.integers(l + 1, n))
        part = sorted(self.model[l:r])
        k = data.draw(st.integers(0, r - l - 1))
        assert self.s.quantile(l, r, k) == part[k]
        x = data.draw(st.integers(0, 2**20 + 1))
        assert self.s.count_less(l, r, x) == sum(v < x for v in part)
        below = [v for v in part if v < x]
        assert self.s.prev_value(l, r, x) == (max(below) if below else None)
        above = [v for v in part if v >= x]
        assert self.s.next_value(l, r, x) == (min(above) if above else None)

    @invariant()
    def whole_sequence(self):
        if hasattr(self, "s"):
            assert self.s.extract().tolist() == self.model
            assert len(self.s) == len(self.model)


SequenceMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=12, deadline=None)
TestSequences = SequenceMachine.TestCase
