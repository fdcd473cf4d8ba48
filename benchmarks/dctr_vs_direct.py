"""DCTR fit against the direct gradient fit through diffgen, on the same target (issue 14).

e+e- → μ+μ- at √s = 94 GeV, θ = StandardModel:sin2thetaWbar, target: 20 000 weighted events at
θ* = 0.22 (θ0 = 0.2315, the default; prior U(0.20, 0.245)). Observable: cos θ of the μ-.

* DCTR: a θ0 sample and a prior sample (θ ~ U(0.20, 0.26) in 32 groups) train f(cos θ, θ); θ is then
  fitted to the target through the classifier (:func:`diffgen.unfold.dctr_fit`, sandwich errors). Two
  classifiers trained with different keys show the part of the error the Hessian does not count.
* direct: :func:`diffgen.fit.linear.fit_linearized` on a 10-bin cos θ histogram (forward-mode
  Gauss–Newton through the generator, Fisher errors including the simulation's).
* unbinned exact: the maximum of the exact likelihood Σ v log p(c|θ) from the closed form, the
  reference both should approach.

Prints values, errors, events simulated and wall time for each; the numbers are in docs/unfolding.md.

    PYTHONPATH=. python benchmarks/dctr_vs_direct.py [--events 65536]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffgen
from diffgen.amplitudes import ee_ffbar
from diffgen.expect import event_weights
from diffgen.fit import targets
from diffgen.fit.linear import fit_linearized
from diffgen.observables import fermion_cos_theta
from diffgen.unfold import TrainConfig, dctr_fit, fit_dctr

NAME = "StandardModel:sin2thetaWbar"
THETA0, THETA_STAR, PRIOR = 0.2315, 0.22, (0.20, 0.245)
# The μμ angular shape depends on sin²θ̄_W only through v² = (1 − 4 sin²θ̄_W)²: near 0.25 it is flat (at
# θ* = 0.236 the exact likelihood of 20 000 events peaks at 0.25 with σ ≈ 0.01), so θ* = 0.22 (v = 0.12).


def cos_and_weights(gen, params, key, n, offset=0):
    ev = gen.sample(params, key, n, offset)
    return np.asarray(fermion_cos_theta(ev), np.float64), np.asarray(event_weights(ev), np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=65536, help="events in each DCTR training sample")
    ap.add_argument("--target", type=int, default=20000)
    ap.add_argument("--direct-events", type=int, default=20000, help="events per iteration of the direct fit")
    args = ap.parse_args()

    gen = diffgen.presets.ee_mumu(94.0)
    p0 = gen.default_params()
    target_params = diffgen.with_settings(p0, {NAME: THETA_STAR})
    c_t, v_t = cos_and_weights(gen, target_params, jax.random.key(100), args.target)
    v_t = v_t / v_t.mean()

    # --- DCTR
    t = time.perf_counter()
    c0, w0 = cos_and_weights(gen, p0, jax.random.key(1), args.events)
    groups = 32
    per = args.events // groups
    thetas = np.linspace(*PRIOR, groups)
    c1, w1, th1 = [], [], []
    for g, th in enumerate(thetas):
        c, w = cos_and_weights(gen, diffgen.with_settings(p0, {NAME: float(th)}), jax.random.key(2), per, g * per)
        c1.append(c), w1.append(w), th1.append(np.full(per, th))
    c1, w1, th1 = map(np.concatenate, (c1, w1, th1))
    t_gen = time.perf_counter() - t
    fits = []
    for seed in (3, 13):
        t1 = time.perf_counter()
        model, info = fit_dctr(jax.random.key(seed), c0, w0, [THETA0], c1, w1, th1, names=(NAME,),
                               config=TrainConfig(epochs=40))
        t_train = time.perf_counter() - t1
        res = dctr_fit(model, c_t, c0, target_weights=v_t, w0=w0, bounds=[PRIOR], bootstrap=5,
                       key=jax.random.key(4))
        t_fit = time.perf_counter() - t1 - t_train
        fits.append(res.theta[0])
        print(f"DCTR (classifier key {seed}): {NAME} = {res.theta[0]:.5f} +- {res.errors[0]:.5f} (bootstrap "
              f"{np.std(res.bootstrap):.5f}), {2 * args.events} events simulated, {t_gen + t_train + t_fit:.1f} s "
              f"(generate {t_gen:.1f}, train {t_train:.1f} in {info.epochs} epochs, fit {t_fit:.1f})")
    print(f"DCTR: spread between the two classifiers {abs(fits[0] - fits[1]):.5f}")

    # --- direct gradient fit (forward-mode linearised Gauss-Newton on a cos θ histogram)
    obs = [("cos_theta", targets.cos_theta, np.linspace(-1, 1, 11))]
    ev_t = gen.sample(target_params, jax.random.key(100), args.target)
    data = targets.from_events(ev_t, obs)
    t = time.perf_counter()
    direct = fit_linearized(gen, p0, data, obs, [NAME], bounds={NAME: PRIOR}, n_events=args.direct_events,
                            key=jax.random.key(5), progress=False)
    t_direct = time.perf_counter() - t
    print(f"direct: {NAME} = {direct.settings[NAME]:.5f} +- {direct.errors[NAME]:.5f}, "
          f"{direct.n_events_total} events simulated, {t_direct:.1f} s, converged {direct.converged}: {direct.message}")

    # --- exact unbinned likelihood (closed form), the reference
    with jax.enable_x64(True):
        hard = {k: jnp.asarray(float(v), jnp.float64) for k, v in p0["hard"].items()}
        m = diffgen.processes.fermion_mass(13)
        c = jnp.asarray(c_t)

        def nll(th):
            p = {**hard, NAME: th}
            log_p = jnp.log(ee_ffbar.dsigma_dcos(p, 13, m, c)) - jnp.log(ee_ffbar.sigma_total(p, 13, m))
            return -jnp.sum(v_t * log_p)

        grid = np.linspace(PRIOR[0], PRIOR[1], 121)  # the likelihood has a stationary point at v = 1 - 4 s = 0
        th = jnp.asarray(grid[int(np.argmin([float(nll(jnp.asarray(x))) for x in grid]))])
        for _ in range(10):
            th = th - jax.grad(nll)(th) / jax.hessian(nll)(th)
        g = jax.vmap(jax.grad(lambda t_, ci, vi: vi * (jnp.log(ee_ffbar.dsigma_dcos({**hard, NAME: t_}, 13, m, ci))
                                                      - jnp.log(ee_ffbar.sigma_total({**hard, NAME: t_}, 13, m)))),
                     (None, 0, 0))(th, c, jnp.asarray(v_t))
        h = float(jax.hessian(nll)(th))
        err = float(np.sqrt(np.sum(np.asarray(g) ** 2)) / h)
    print(f"exact:  {NAME} = {float(th):.5f} +- {err:.5f} (unbinned closed-form likelihood, sandwich error)")
    print(f"truth:  {NAME} = {THETA_STAR}")


if __name__ == "__main__":
    main()
