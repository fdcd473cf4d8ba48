"""The tune's progress bars carry the χ²; the Newton polish and the covariance step have their own (issue 18)."""

import jax
import numpy as np

import diffgen
from diffgen.fit import fit, fitter, targets


class _Bar:
    """Records what the fit draws instead of drawing it."""

    def __init__(self, total, desc, unit, enabled):
        self.desc, self.total, self.steps, self.postfixes, self.closed = desc, total, 0, [], False

    def set_postfix(self, refresh=True, **values):
        self.postfixes.append(values)

    def update(self, n=1):
        self.steps += n

    def close(self):
        self.closed = True


def test_bars_show_the_chi2_of_every_step(monkeypatch):
    bars = []
    monkeypatch.setattr(fitter, "progress_bar", lambda *a: bars.append(_Bar(*a)) or bars[-1])
    gen = diffgen.presets.ee_mumu(91.2)
    edges = np.linspace(-1, 1, 5)
    data = targets.from_arrays("cos_theta", np.array([0.2, 0.3, 0.3, 0.2]), np.full(4, 0.02), edges)
    res = fit(gen, gen.default_params(), [data], [("cos_theta", targets.cos_theta, edges)], ["23:m0"],
              steps=4, n_events=500, key=jax.random.key(0), progress=True, newton_steps=2, covariance_events=500)
    assert [b.desc for b in bars] == ["fit", "fit: Newton polish", "fit: covariance"]
    assert all(b.closed for b in bars)
    main, newton, cov = bars
    steps = len(res.loss_history)
    assert main.steps == steps and len(main.postfixes) == steps  # a χ² for every step, not every tenth
    assert [float(p["chi2"]) for p in main.postfixes] == [float(f"{v:.4g}") for v in res.loss_history]
    assert newton.total == 2 and newton.steps == len(newton.postfixes) and newton.steps <= 2
    assert all("chi2" in p for p in newton.postfixes)
    assert cov.steps == 2 and "chi2" in cov.postfixes[-1] and "chi2_start" in cov.postfixes[-1]
