"""Tests of diffgen.observables: hand-computed configurations, exact thrust, invariances, counts, gradients."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffgen.events import Events
from diffgen.observables import (
    OBSERVABLES,
    charged_multiplicity,
    count,
    durham_merge_scales,
    multiplicity,
    n_kaons,
    n_pions,
    n_protons,
    particle_histogram,
    scaled_momentum,
    sphericity_eigenvalues,
    sqrt_s,
    thrust_analysis,
    thrust_axis,
    thrust_rapidity,
)

SHAPES = [k for k in OBSERVABLES if not k.startswith("n_") and "multiplicity" not in k]
_C, _S = -0.5, 3**0.5 / 2


def make_events(particles, capacity=6, dtype=jnp.float32, pids=None):
    """Events from a list of per-event lists of four-vectors (E, px, py, pz)."""
    n = len(particles)
    p4 = np.zeros((n, capacity, 4))
    mask = np.zeros((n, capacity), bool)
    pid = np.zeros((n, capacity), np.int32)
    for i, ps in enumerate(particles):
        ps = np.asarray(ps, float).reshape(-1, 4)
        p4[i, : len(ps)] = ps
        mask[i, : len(ps)] = True
        pid[i, : len(ps)] = 211 if pids is None else pids[i][: len(ps)]
    return Events.empty(n, capacity, dtype).replace(
        p4=jnp.asarray(p4, dtype), mask=jnp.asarray(mask), pid=jnp.asarray(pid))


def massless(p3):
    p3 = np.asarray(p3, float)
    return np.concatenate([np.linalg.norm(p3, axis=-1, keepdims=True), p3], -1)


def _observables(ev):
    out = {k: OBSERVABLES[k](ev) for k in SHAPES}
    out["merge_scales"] = durham_merge_scales(ev, 3)
    out["thrust_axis"] = thrust_axis(ev)
    return out


_ALL = jax.jit(_observables)  # one compilation per (shape, dtype)


def evaluate(ev):
    return {k: np.asarray(v) for k, v in _ALL(ev).items()}


_GRADIENT_OF = dict({k: OBSERVABLES[k] for k in SHAPES}, thrust_axis=thrust_axis, thrust_rapidity=thrust_rapidity,
                    scaled_momentum=scaled_momentum, sphericity_eigenvalues=sphericity_eigenvalues,
                    merge_scales=lambda e: durham_merge_scales(e, 3) @ jnp.asarray([1.0, 10.0, 100.0], e.p4.dtype))


@functools.partial(jax.jit, static_argnames="names")
def _gradients(ev, names=tuple(_GRADIENT_OF)):
    """d(Σ over the batch of each observable)/d p4, f[N, P, 4] each; row n is event n's own gradient."""
    return {k: jax.grad(lambda p4, f=_GRADIENT_OF[k]: jnp.sum(f(ev.replace(p4=p4))))(ev.p4) for k in names}


BACK_TO_BACK = [[1, 0, 0, 1], [1, 0, 0, -1]]
MERCEDES = [[1, 1, 0, 0], [1, _C, _S, 0], [1, _C, -_S, 0]]
CROSS = [[1, 1, 0, 0], [1, -1, 0, 0], [1, 0, 1, 0], [1, 0, -1, 0]]
THREE_FOUR_FIVE = [[3, 3, 0, 0], [4, 0, 4, 0], [5, -3, -4, 0]]
SPLIT_345 = [[1, 1, 0, 0], [2, 2, 0, 0], [4, 0, 4, 0], [5, -3, -4, 0]]  # p1 of 3-4-5 split collinearly
# The hand-computed and degenerate configurations, evaluated as one float32 batch (one compilation).
ZOO = {
    "back_to_back": BACK_TO_BACK,
    "back_to_back_oblique": massless([[0.3, -0.5, 0.8], [-0.3, 0.5, -0.8]]),
    "collinear": [[1, 0, 0, 1], [2, 0, 0, 2], [3, 0, 0, -3]],
    "single": [[2, 1, 1, 1]],
    "empty": [],
    "mercedes": MERCEDES,
    "cross": CROSS,
    "three_four_five": THREE_FOUR_FIVE,
    "split_345": SPLIT_345,
}


@pytest.fixture(scope="module")
def zoo():
    r = evaluate(make_events(list(ZOO.values())))
    return {name: {k: v[i] for k, v in r.items()} for i, name in enumerate(ZOO)}


def check(row, expect, atol=2e-6):
    for k, v in expect.items():
        np.testing.assert_allclose(row[k], v, atol=atol, err_msg=k)


# ------------------------------------------------------------------------------------------ hand-computed
@pytest.mark.parametrize("name", ["back_to_back", "back_to_back_oblique", "collinear", "single", "empty"])
def test_two_jet_limits_and_defaults(zoo, name):
    """Pencil-like events, a single particle and empty events: T = 1 and every other shape 0
    (ρ_H of the single massive particle (2; 1, 1, 1) is m²/E² = 1/4). Durham y12 of two equal back-to-back
    jets is 2E²·2/(2E)² = 1, the collinear pair merging first at y = 0."""
    row = zoo[name]
    y12 = 1.0 if name in ("back_to_back", "back_to_back_oblique", "collinear") else 0.0
    check(row, {"thrust": 1.0, "heavy_jet_mass": 0.25 if name == "single" else 0.0, "merge_scales": [y12, 0, 0]})
    for k in set(SHAPES) - {"thrust", "heavy_jet_mass"}:
        np.testing.assert_allclose(row[k], 0.0, atol=2e-6, err_msg=k)


def test_mercedes_star(zoo):
    """Three equal energies at 120° in a plane, by hand.

    T = (1 + ½ + ½)/3 = 2/3 along a particle; T_major = 2 sin60°/3 = 1/√3; T_minor = 0.
    Both tensors are ½ × (projector on the plane): λ = (½, ½, 0), so S = 3/2·½ = 3/4, A = 0,
    C = 3·¼ = 3/4, D = 0. Hemispheres {1}, {2, 3}: B_T = B_W = 2 sin60°/(2·3) = √3/6;
    ρ_H = 2(1 − cos120°)/3² = 1/3. y23 = 2(1 − cos120°)/9 = 1/3; the merged pair (2; ½, √3/2, 0) is back to
    back with the third: y12 = 2·1·2/9.
    """
    check(zoo["mercedes"], dict(
        thrust=2 / 3, thrust_major=3**-0.5, thrust_minor=0, oblateness=3**-0.5, sphericity=0.75, aplanarity=0,
        c_parameter=0.75, d_parameter=0, b_total=3**0.5 / 6, b_wide=3**0.5 / 6, heavy_jet_mass=1 / 3,
        light_jet_mass=0, y23=1 / 3, merge_scales=[4 / 9, 1 / 3, 0]))


def test_planar_cross(zoo):
    """Four equal energies along ±x, ±y, by hand.

    T = max_φ 2(|cos φ| + |sin φ|)/4 = 1/√2 on a diagonal; T_major = 1/√2 (other diagonal), T_minor = 0.
    Tensors = ½ × projector on the plane: S = C = 3/4, A = D = 0. Each particle has |p⃗ × n| = sin45°:
    B± = 2/√2/(2·4) = √2/8, B_T = √2/4. Hemisphere masses 2(1 − cos90°)/4² = 1/8.
    Durham: neighbours y = 2(1 − 0)/16 = 1/8 merge first; then (+x+y) vs −x: 2(1 + 1/√2)/16 > 1/8 = y(−x, −y),
    so y34 = y23 = 1/8, and the last two (2; ±1, ±1, 0) are back to back: y12 = 2·4·2/16 = 1.
    """
    h = 2**-0.5
    check(zoo["cross"], dict(
        thrust=h, thrust_major=h, thrust_minor=0, oblateness=h, sphericity=0.75, aplanarity=0, c_parameter=0.75,
        d_parameter=0, b_total=2**0.5 / 4, b_wide=2**0.5 / 8, heavy_jet_mass=1 / 8, light_jet_mass=1 / 8, y23=1 / 8,
        merge_scales=[1, 1 / 8, 1 / 8]))


def test_three_four_five_by_hand(zoo):
    """p = (3,0,0), (0,4,0), (−3,−4,0), E_vis = 12. Durham: y(1,2) = 2·9·(1 − 0)/144 = 1/8,
    y(1,3) = 2·9·1.6/144 = 0.2, y(2,3) = 2·16·1.8/144 = 0.4, so y23 = 1/8; then (7; 3,4,0) and (5; −3,−4,0)
    are back to back: y12 = 2·25·2/144. T = 2·5/12 along p3; T_major = (2.4 + 2.4)/12 = 0.4.
    """
    check(zoo["three_four_five"], dict(thrust=10 / 12, thrust_major=0.4, thrust_minor=0, y23=1 / 8,
                                       merge_scales=[100 / 144, 1 / 8, 0]))


def test_collinear_safety(zoo):
    """IRC-safe observables are unchanged by a collinear massless splitting (p1 = 1 + 2 of the 3-4-5 event;
    the Durham y34 of the split event is 0). S and A are not collinear safe."""
    a, b = zoo["three_four_five"], zoo["split_345"]
    for k in set(SHAPES) - {"sphericity", "aplanarity"}:
        np.testing.assert_allclose(a[k], b[k], atol=2e-6, err_msg=k)
    np.testing.assert_allclose(b["merge_scales"], a["merge_scales"], atol=1e-6)


def test_isotropic_limits():
    """Isotropic unit momenta: C → 1, D → 1, T → 1/2, S → 1, A → 1/2 as the multiplicity n grows.

    For n isotropic unit vectors Θ = (1/n) Σ û ûᵀ has E Θ = I/3 and E‖Θ − I/3‖² = (2/3)/n; with tr Θ = 1,
    C = 3/2 (1 − Σλ²) = 1 − 3/2 ‖Θ − I/3‖², so E[C] = 1 − 1/n exactly: tested within 4 standard errors
    of the sample. T − 1/2 and 1 − S are maxima over directions of fluctuations of size O(1/√n), so their
    means must fall like 1/√n: the ratio between n = 50 and n = 800 must be √16 = 4 (tolerance ±1.2 for
    the statistical error of a 40-event sample and O(1/n) corrections).
    """
    rng = np.random.default_rng(7)
    n_ev, sizes = 40, (50, 800)
    parts = []
    for n in sizes:
        u = rng.normal(size=(n_ev, n, 3))
        parts += [massless(x / np.linalg.norm(x, axis=-1, keepdims=True)) for x in u]
    ev = make_events(parts, capacity=max(sizes))  # smaller events padded: one compilation
    names = ("thrust", "sphericity", "aplanarity", "c_parameter", "d_parameter")
    r = {k: np.asarray(v) for k, v in jax.jit(lambda e: {k: OBSERVABLES[k](e) for k in names})(ev).items()}
    dev = {}
    for i, n in enumerate(sizes):
        sl = slice(i * n_ev, (i + 1) * n_ev)
        c = r["c_parameter"][sl]
        assert abs(c.mean() - (1 - 1 / n)) < 4 * c.std() / np.sqrt(n_ev) + 1e-5, (n, c.mean())
        dev[n] = {k: abs(r[k][sl].mean() - lim) for k, lim in
                  (("thrust", 0.5), ("sphericity", 1.0), ("aplanarity", 0.5), ("d_parameter", 1.0))}
    for k in dev[sizes[0]]:
        ratio = dev[sizes[0]][k] / dev[sizes[1]][k]
        limit = 4.0 if k != "d_parameter" else 16.0  # D − 1 is quadratic in the fluctuations: O(1/n)
        assert abs(ratio - limit) < 0.3 * limit, (k, ratio)
    assert dev[sizes[1]]["thrust"] < 0.03 and dev[sizes[1]]["sphericity"] < 0.05


# ------------------------------------------------------------------------------------------ exact thrust
def _brute_thrust(p3):
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(p3))))
    return np.max(np.linalg.norm(signs @ p3, axis=1)) / np.linalg.norm(p3, axis=1).sum()


def _random_events(rng, n_ev, capacity, n_min=2, massive=False):
    n = rng.integers(n_min, capacity + 1, n_ev)
    p3 = rng.normal(size=(n_ev, capacity, 3)) * rng.exponential(size=(n_ev, capacity, 1))
    e = np.linalg.norm(p3, axis=-1, keepdims=True)
    if massive:
        e = np.sqrt(e**2 + 0.14**2)
    p4 = np.concatenate([e, p3], -1)
    return [p4[i, : n[i]] for i in range(n_ev)]


def test_thrust_against_brute_force():
    """Iterative thrust vs enumeration of all 2^n sign assignments (n ≤ 10), float64: ≥ 99% agree within 1e-5
    and none exceeds the exact value. Thrust major vs the same enumeration in the plane ⊥ our axis."""
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        parts = _random_events(rng, 300, 10)
        ev = make_events(parts, capacity=10, dtype=jnp.float64)
        r = jax.jit(thrust_analysis)(ev)
        t, major, axis = (np.asarray(x) for x in (r.thrust, r.major, r.axis))
    exact = np.array([_brute_thrust(p[:, 1:]) for p in parts])
    assert np.mean(np.abs(t - exact) < 1e-5) >= 0.99
    assert np.all(t <= exact + 1e-12)
    exact_major = []
    for p, a in zip(parts, axis):
        q = p[:, 1:] - np.outer(p[:, 1:] @ a, a)
        exact_major.append(_brute_thrust(q) * np.linalg.norm(q, axis=1).sum() / np.linalg.norm(p[:, 1:], axis=1).sum())
    assert np.mean(np.abs(major - np.array(exact_major)) < 1e-5) >= 0.99
    assert np.all(major <= np.array(exact_major) + 1e-12)


# ------------------------------------------------------------------------------------------ invariances
def _generic_batch(rng):
    """49 float64 events in 12 slots: 45 random (3–7 massive particles) and four special ones."""
    special = [np.asarray(p, float).reshape(-1, 4) for p in (MERCEDES, CROSS, ZOO["single"], [])]
    return _random_events(rng, 45, 7, n_min=3, massive=True) + special


def test_rotation_padding_permutation_invariance():
    """Values unchanged by a global rotation, and by permuting the slots with the padded slots (holding junk
    momenta, mask False) at random positions (float64)."""
    rng = np.random.default_rng(11)
    names = tuple(SHAPES) + ("merge_scales",)
    with jax.enable_x64(True):
        parts = _generic_batch(rng)
        ev = make_events(parts, capacity=12, dtype=jnp.float64)
        ref = evaluate(ev)

        rot = Rotation.random(random_state=5).as_matrix()
        rotated = [np.concatenate([p[:, :1], p[:, 1:] @ rot.T], 1) if len(p) else p for p in parts]
        r_rot = evaluate(make_events(rotated, capacity=12, dtype=jnp.float64))

        junk = jnp.asarray(rng.normal(size=ev.p4.shape))
        ev = ev.replace(p4=jnp.where(ev.mask[..., None], ev.p4, junk))
        perm = jnp.asarray(np.stack([rng.permutation(12) for _ in range(ev.n_events)]))
        shuffled = ev.replace(p4=jnp.take_along_axis(ev.p4, perm[..., None], 1),
                              mask=jnp.take_along_axis(ev.mask, perm, 1), pid=jnp.take_along_axis(ev.pid, perm, 1))
        r_perm = evaluate(shuffled)
    for k in names:
        np.testing.assert_allclose(r_rot[k], ref[k], atol=1e-9, err_msg=k)
        np.testing.assert_allclose(r_perm[k], ref[k], atol=1e-9, err_msg=k)
    axis_rot = ref["thrust_axis"] @ rot.T  # a line: compare up to sign (not for the degenerate special events)
    np.testing.assert_allclose(np.abs(np.sum(axis_rot * r_rot["thrust_axis"], -1))[:45], 1.0, atol=1e-9)


# ------------------------------------------------------------------------------------------ counts, x_p
def test_counts_with_padding_and_antiparticles():
    pids = [[211, -211, 321, -321, 2212, -2212, 111, 22, 11, 130], [-211, 22]]
    ev = make_events([massless(np.ones((10, 3))), massless(np.ones((2, 3)))], capacity=12, pids=pids)
    ev = ev.replace(pid=ev.pid.at[1, 5].set(211))  # a pid in a padded slot must not count
    fns = (multiplicity, charged_multiplicity, n_pions, n_kaons, n_protons, lambda e: count(e, (-211, 321)))
    got = jax.jit(lambda e: [f(e) for f in fns])(ev)
    for value, expect in zip(got, ([10, 2], [7, 1], [2, 1], [2, 0], [2, 0], [4, 1])):
        np.testing.assert_array_equal(value, expect)
        assert value.dtype == ev.p4.dtype
    with pytest.raises(ValueError):
        count(ev, ())


def test_scaled_momentum_and_histogram():
    """x_p = 2|p⃗|/√s with √s from the beams or, without beams, E_vis; weighted per-particle histogram."""
    ev = make_events([THREE_FOUR_FIVE, [[5, 0, 3, 4]]])
    beams = jnp.asarray([[[45.6, 0, 0, 45.6], [45.6, 0, 0, -45.6]]] * 2, jnp.float32)
    ev_b = ev.replace(p4_in=beams, log_weight=jnp.log(jnp.asarray([2.0, 3.0])))

    @jax.jit
    def run(ev, ev_b):
        hist = lambda lw: particle_histogram(scaled_momentum(ev), ev.replace(log_weight=lw), 5, range=(0.0, 2.5))  # noqa: E731
        contents, grad = jax.value_and_grad(lambda lw: hist(lw).contents[4])(ev_b.log_weight)
        return scaled_momentum(ev), scaled_momentum(ev_b), sqrt_s(ev_b), hist(ev_b.log_weight).contents, grad

    xp, xp_b, rs, contents, grad = (np.asarray(x) for x in run(ev, ev_b))
    np.testing.assert_allclose(xp[0, :3], [2 * 3 / 12, 2 * 4 / 12, 2 * 5 / 12], rtol=1e-6)  # √s = E_vis = 12
    np.testing.assert_allclose(xp[1], [2.0, 0, 0, 0, 0, 0])  # padded slots are 0
    np.testing.assert_allclose(rs, 91.2, rtol=1e-6)
    np.testing.assert_allclose(xp_b[0, :3], np.array([6, 8, 10]) / 91.2, rtol=1e-5)
    # x_p = 1/2, 2/3, 5/6 with weight 2 and x_p = 2 with weight 3; padded slots not counted.
    np.testing.assert_allclose(contents, [0, 3 * 2, 0, 0, 3], rtol=1e-6)
    np.testing.assert_allclose(grad, [0, 3], rtol=1e-6)  # d(w₂·1)/d log w₂ = w₂


# ------------------------------------------------------------------------------------------ gradients
@pytest.fixture(scope="module")
def zoo_gradients():
    ev = make_events(list(ZOO.values()))
    return ev, {k: np.asarray(v) for k, v in _gradients(ev).items()}


@pytest.mark.parametrize("name", sorted(_GRADIENT_OF))
def test_gradients_finite_at_degenerate_configurations(zoo_gradients, name):
    """jax.grad of Σ_events O (float32) is finite for back-to-back, collinear, padded, single-particle and
    empty events, and zero in padded slots."""
    ev, grads = zoo_gradients
    g = grads[name]
    assert np.all(np.isfinite(g)), name
    assert np.all(g[~np.asarray(ev.mask)] == 0), name


FD_NAMES = ("thrust", "c_parameter", "d_parameter", "sphericity", "aplanarity", "b_total", "b_wide", "y23",
            "thrust_major", "thrust_minor", "heavy_jet_mass", "merge_scales")


@pytest.fixture(scope="module")
def fd_batch():
    """A generic 6-particle event (float64, 12 slots) followed by its 24 + 24 central perturbations ±h e_c,
    so that every finite difference comes from one batched evaluation; values and gradients of all events."""
    rng = np.random.default_rng(5)
    h = 1e-6
    with jax.enable_x64(True):
        p = _random_events(rng, 1, 6, n_min=6, massive=True)[0]
        eye = np.eye(24).reshape(24, 6, 4)
        ev = make_events([p] + list(p + h * eye) + list(p - h * eye), capacity=12, dtype=jnp.float64)
        vals = evaluate(ev)
        vals["merge_scales"] = vals["merge_scales"] @ np.array([1.0, 10.0, 100.0])  # as in _GRADIENT_OF
        grads = {k: np.asarray(v) for k, v in _gradients(ev, FD_NAMES).items()}
    return ev, h, vals, grads


@pytest.mark.parametrize("name", FD_NAMES)
def test_autodiff_matches_finite_differences(fd_batch, name):
    """Autodiff vs central finite differences (h = 1e-6, float64) for all 24 momentum components
    (merge_scales: y12 + 10 y23 + 100 y34, so each scale's derivative matters)."""
    _, h, vals, grads = fd_batch
    fd = ((vals[name][1:25] - vals[name][25:49]) / (2 * h)).reshape(6, 4)
    ad = grads[name][0, :6]
    np.testing.assert_allclose(ad, fd, atol=1e-6, rtol=1e-5, err_msg=name)
    assert np.abs(ad).max() > 1e-3, name  # a non-trivial dependence is being tested
    assert np.all(grads[name][0, 6:] == 0)


def test_thrust_gradient_is_envelope_formula(fd_batch):
    """dT/dp⃗_k = (s_k n − T p̂_k)/Σ|p⃗| at the thrust axis n (envelope theorem); dT/dE = 0."""
    ev, _, vals, grads = fd_batch
    g, n, t = grads["thrust"], vals["thrust_axis"], vals["thrust"]
    p3 = np.asarray(ev.p4[..., 1:])
    norm = np.linalg.norm(p3, axis=-1)
    s = np.sign(np.einsum("npi,ni->np", p3, n))
    unit = np.divide(p3, norm[..., None], out=np.zeros_like(p3), where=norm[..., None] > 0)
    expect = (s[..., None] * n[:, None, :] - t[:, None, None] * unit) / norm.sum(-1)[:, None, None]
    expect[~np.asarray(ev.mask)] = 0
    np.testing.assert_allclose(g[..., 1:], expect, atol=1e-12)
    np.testing.assert_array_equal(g[..., 0], 0.0)
