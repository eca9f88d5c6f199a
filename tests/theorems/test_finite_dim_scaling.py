"""theory.finite_dim at large D: the fluctuations are O(1/D), as a property over drawn settings.

At D >> N the within-class block's spectrum concentrates (Marchenko-Pastur with ratio m / D), so the margin and
fresh-margin covariances are gamma = m / D times a limit plus O(gamma^2): D x covariance must agree at D = 1e4 N and
1e5 N up to O(m / D) = O(1e-4) of its largest entry (the test allows 1e-3; a variance of any other order in 1/D changes
by a factor of 10 between the two and fails). The D -> infinity limit itself is tests/theorems/test_finite_dim.py's
property test_property_valid_outputs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings

from theory import finite_dim as fd

from .test_finite_dim import settings_


@settings(max_examples=25)
@given(settings_())
def test_property_covariances_scale_like_one_over_D(setting):
    K, n, c, d, lam, _, counts = setting
    N = K * n
    scaled = []
    for D in (1e4 * N, 1e5 * N):
        p = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=6, probabilities=False)
        scaled.append((D * p.margin_cov, D * p.fresh_margin_cov))
    (m1, f1), (m2, f2) = scaled
    for a, b, name in ((m1, m2, "training"), (f1, f2, "fresh")):
        ok = np.isfinite(b)
        assert np.array_equal(ok, np.isfinite(a))
        top = float(np.abs(b[ok]).max())
        event(f"{name} margins {'fluctuate' if top > 1e-12 else 'do not fluctuate'}")
        if name == "training" and top <= 1e-12:
            # some label patterns leave the training margins without fluctuation (every instance given the same
            # label with n = 2, where the (1 - 2/m) Haar factor is 0): then exactly zero at both D
            assert top == 0.0 and float(np.abs(a[ok]).max()) == 0.0
            continue
        # not vanishing: a fresh margin always fluctuates (its own feature noise); the size of the coefficient
        # varies by orders of magnitude with the outputs' spread (tests/theorems/test_finite_dim.py pins one case)
        assert top > 0.0, name
        # entry-wise against the largest entry: an entry whose 1/D coefficient is ~0 keeps its O(1/D^2) part
        assert float(np.abs(a[ok] - b[ok]).max()) <= 1e-3 * top, name
