"""The documented error bound of the rollups' percentiles (queries/schema/014_exact_latency_states.sql).

A quantileBFloat16 state counts samples per bfloat16 value (8 significant bits); the q-quantile it reads is
the sample at rank k = max(1, ⌈q·n⌉) of the n samples, with its mantissa truncated: within 2⁻⁷ of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

REL_ERROR = 2.0 ** -7  # 0.78 %: the bfloat16 mantissa keeps 7 of Float32's 23 bits


def rank_sample(samples: Sequence[float], q: float) -> float:
    """The sample the estimator reads: the k-th smallest, k = max(1, ⌈q·n⌉)."""
    s = sorted(samples)
    return s[max(1, math.ceil(q * len(s))) - 1]


def within_bound(estimate: float, samples: Sequence[float], q: float) -> bool:
    exact = rank_sample(samples, q)
    return abs(estimate - exact) <= REL_ERROR * abs(exact)
