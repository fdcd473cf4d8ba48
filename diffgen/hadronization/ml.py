"""The ML hadronization layer: colour-singlet clusters → two hadrons each, decay angles from a network.

HADML-style (Ghosh et al., arXiv:2203.12660; Chan et al., arXiv:2305.17169): a cluster model in which
the kinematics of every cluster's two-body decay comes from a conditional generator network.
``ml_hadronization(...)`` returns a :class:`~diffgen.stage.Stage`, a drop-in replacement for the string
stage after the shower (``diffgen.presets.ee_hadrons(hadronization="ml")``):

1. **Clusters** (:mod:`diffgen.hadronization.clusters`): gluons split into collinear q q̄ halves
   (z = ½, flavour u : d : s = 1 : 1 : ``StringFlav:probStoUD``); colour-adjacent (colour tag =
   anticolour tag) quark and antiquark ends form colour-singlet clusters.
2. **Fission** of heavy clusters, ``fission_rounds`` rounds, smooth Herwig-like threshold
   ``ClusterFission:maxMass``, ``ClusterFission:power``, child masses with ``ClusterFission:pSplit``.
3. **Light clusters** (below the lightest two-meson state + 10 MeV) become the lightest meson of their
   flavour, with a two-body momentum reshuffle against the heaviest cluster of the event.
4. **Decay** of every other cluster (q_a q̄_b) into h₁ = (q_a q̄_new), h₂ = (q_new q̄_b): the popped
   flavour and both species from the string stage's flavour model
   (:func:`~diffgen.hadronization.flavour.sample_bundle`: u : d : s = 1 : 1 : probStoUD,
   pseudoscalar/vector from ``StringFlav:mesonUDvector``/``mesonSvector``, η/η′ suppression, meson
   mixing), restricted to pairs with m₁ + m₂ + 10 MeV ≤ M. In the cluster rest frame h₁ flies along
   the unit vector with polar angle θ* about the quark-end axis n̂ and azimuth φ*:

       cos θ* = tanh((logit u₁ + δ₁)/2),   φ* = 2π u₂ + δ₂,   (δ₁, δ₂) = net(context, noise),

   with |p*| = λ^½(M², m₁², m₂²)/(2M); h₁ is boosted to the lab and h₂ = P − h₁. The context
   (:func:`cluster_context`, 22 features) holds log M, the cluster's energy fraction 2E/√s and
   velocity, the angle between n̂ and its flight direction, the masses and the free mass fraction
   (M − m₁ − m₂)/M, whether each end is a perturbative shower (anti)quark, and one-hot flavours of
   q_a, q̄_b and q_new; the noise is ``noise_dim`` standard normals and 2u₁ − 1. The network's last
   layer starts at zero, so the untrained layer decays isotropically (u₁, u₂ uniform).

Conservation: per cluster Σp = P exactly by construction (h₂ = P − h₁), charge and flavour exactly
(q_new q̄_new is a neutral pair), per event four-momentum to float32 rounding (a final
:func:`~diffgen.kinematics.match_total_momentum` removes the last ~1e-6 √s). Fixed shapes: ``C`` =
``max_clusters`` cluster slots, ``capacity`` output slots; more sets ``CAPACITY_OVERFLOW``.

Gradients: pathwise in the parton momenta, the network weights (through θ*, φ*) and
``ClusterFission:pSplit`` (child masses); score terms ``log p − stop_gradient(log p)`` in
``log_weight`` for the discrete choices: gluon-split and popped flavours and species (probStoUD,
vector ratios) and each fission decision (maxMass, power). Gradient-safe numerics throughout.

Status bits: ``CAPACITY_OVERFLOW`` (clusters or hadrons beyond their slots), ``FAILED_KINEMATICS``
(broken colour flow, a light cluster without a partner), ``PARAM_OUT_OF_RANGE`` (traced settings
outside their range), ``NONFINITE``. ``diagnose`` returns per-cluster records (for tests and training).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from diffgen import Events
    >>> st = ml_hadronization(capacity=48, max_clusters=16, hidden=8)
    >>> ev = Events.empty(2, 2).replace(
    ...     p4=jnp.tile(jnp.array([[45.594, 0, 0, 45.594], [45.594, 0, 0, -45.594]]), (2, 1, 1)),
    ...     pid=jnp.tile(jnp.array([2, -2]), (2, 1)), mask=jnp.ones((2, 2), bool),
    ...     colour=jnp.tile(jnp.array([[101, 0], [0, 101]]), (2, 1, 1)))
    >>> out = st.apply(st.init(jax.random.key(0)), jax.random.key(1), ev)
    >>> out.capacity, int(out.status.max()), bool(jnp.allclose(out.total_p4(), ev.total_p4(), atol=1e-3))
    (48, 0, True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen import particles
from diffgen.checks import check_int
from diffgen.events import Events, Status, compact_slots
from diffgen.hadronization.clusters import (
    LIGHT_MARGIN,
    FissionParams,
    collapse_light_clusters,
    fission_round,
    form_clusters,
    rest_axis,
    two_body_along,
)
from diffgen.hadronization.flavour import new_flavour_probs, sample_bundle, species_probs, vector_ratios
from diffgen.hadronization.networks import ClusterDecayNet
from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.params import SETTINGS, out_of_range
from diffgen.stage import Stage, event_keys, fold_keys, normals, uniforms

__all__ = ["ml_hadronization", "ML_SETTING_NAMES", "cluster_context", "N_CONTEXT", "DEFAULT_ML_CAPACITY",
           "DEFAULT_MAX_CLUSTERS", "DEFAULT_FISSION_ROUNDS", "decay_angles"]

ML_SETTING_NAMES = ("ClusterFission:maxMass", "ClusterFission:power", "ClusterFission:pSplit",
                    "StringFlav:probStoUD", "StringFlav:mesonUDvector", "StringFlav:mesonSvector")
DEFAULT_ML_CAPACITY = 96  #: output slots (primary hadrons) per event
DEFAULT_MAX_CLUSTERS = 64  #: cluster slots per event
DEFAULT_FISSION_ROUNDS = 6  #: fission rounds (a 91 GeV q q̄ cluster needs about 5 to reach the threshold)
N_CONTEXT = 22  #: features of :func:`cluster_context`
_QUARK_CHARGE3 = np.array([-1, 2, -1, 2, -1])  #: 3 × charge of d, u, s, c, b
_LOGIT_CLIP = 12.0


def cluster_context(p4, axis, sqrt_s, m1, m2, pos_primary, neg_primary, f_pos, f_neg, q_new):
    """The network's conditioning features of each cluster, f[..., :data:`N_CONTEXT`].

    Args: cluster four-momenta ``p4`` f[..., 4] and quark-end ``axis`` f[..., 4] (GeV, lab frame),
    ``sqrt_s`` f[...] (GeV), hadron masses ``m1``, ``m2`` f[...] (GeV), perturbative-end flags
    bool[...], flavours ``f_pos``, ``f_neg`` (1..5) and ``q_new`` (1..3) i32[...].

    Features: log M, 2E/√s, |p⃗|/E, n̂·β̂ (quark axis vs flight direction in the rest frame),
    (M − m₁ − m₂)/M, m₁, m₂ (GeV), the two flags, one-hot f_pos (5), f_neg (5), q_new (3).
    """
    m = kin.mass(p4)
    e = p4[..., 0]
    p_abs = kin.p3_abs(p4)
    n_hat = rest_axis(p4, axis)
    beta_hat = safe_div(p4[..., 1:], p_abs[..., None])
    dtype = p4.dtype
    feats = [safe_log(m, 0.0), safe_div(2.0 * e, sqrt_s), safe_div(p_abs, e), jnp.sum(n_hat * beta_hat, axis=-1),
             safe_div(m - m1 - m2, m), m1, m2, pos_primary.astype(dtype), neg_primary.astype(dtype)]
    onehots = [jax.nn.one_hot(f_pos - 1, 5, dtype=dtype), jax.nn.one_hot(f_neg - 1, 5, dtype=dtype),
               jax.nn.one_hot(q_new - 1, 3, dtype=dtype)]
    return jnp.concatenate([jnp.stack(feats, axis=-1)] + onehots, axis=-1)


def decay_angles(delta, u1, u2):
    """(cos θ*, φ*) from the network outputs ``delta`` f[..., 2] and uniforms u₁, u₂ f[...]:
    cos θ* = tanh((logit u₁ + δ₁)/2) (= 2u₁ − 1 at δ₁ = 0), φ* = 2π u₂ + δ₂."""
    u1 = jnp.clip(u1, 1e-6, 1.0 - 1e-6)
    t = jnp.clip(jnp.log(u1) - jnp.log1p(-u1) + delta[..., 0], -_LOGIT_CLIP, _LOGIT_CLIP)
    return jnp.tanh(0.5 * t), 2.0 * jnp.pi * u2 + delta[..., 1]


def _sample_gluon_flavours(keys, pid, mask, flav_probs):
    """Flavour (1..3) each gluon splits into, i32[N, P], and the summed log p of those choices, f[N]."""
    u = uniforms(keys, pid.shape[1:])
    cdf = jnp.cumsum(jax.lax.stop_gradient(flav_probs))
    k = jnp.clip(jnp.sum(u[..., None] * cdf[-1] >= cdf, axis=-1), 0, 2)
    is_g = mask & (pid == 21)
    log_p = jnp.where(is_g, safe_log(flav_probs[k], 0.0), 0.0)
    return (k + 1).astype(jnp.int32), jnp.sum(log_p, axis=1)


def ml_hadronization(capacity: int = DEFAULT_ML_CAPACITY, max_clusters: int = DEFAULT_MAX_CLUSTERS,
                     fission_rounds: int = DEFAULT_FISSION_ROUNDS, hidden: int = 64, depth: int = 2,
                     noise_dim: int = 4) -> Stage:
    """The ML hadronization stage (see the module docstring).

    Args:
        capacity: output particle slots per event (int ≥ 2).
        max_clusters: cluster slots per event (int ≥ 1); more clusters set ``CAPACITY_OVERFLOW``.
        fission_rounds: rounds of heavy-cluster fission (int ≥ 0).
        hidden, depth: width (≥ 1) and number of hidden layers (≥ 1) of the generator network.
        noise_dim: standard-normal noise inputs of the network (≥ 0).

    Params: the settings :data:`ML_SETTING_NAMES` (defaults from :data:`diffgen.params.SETTINGS`) and
    ``"net"``, the Flax weights of :class:`~diffgen.hadronization.networks.ClusterDecayNet`
    (``init(key)`` draws them from ``key``; ``key=None`` means ``jax.random.key(0)``).
    """
    capacity = check_int(capacity, "capacity", lo=2)
    max_clusters = check_int(max_clusters, "max_clusters", lo=1)
    fission_rounds = check_int(fission_rounds, "fission_rounds", lo=0, hi=32)
    hidden = check_int(hidden, "hidden (network width)", lo=1)
    depth = check_int(depth, "depth (hidden layers)", lo=1, hi=16)
    noise_dim = check_int(noise_dim, "noise_dim", lo=0, hi=256)
    net = ClusterDecayNet(hidden=hidden, depth=depth)

    def init(key):
        key = jax.random.key(0) if key is None else key
        weights = net.init(key, jnp.zeros((1, N_CONTEXT)), jnp.zeros((1, noise_dim + 1)))["params"]
        return {**{name: jnp.asarray(SETTINGS[name].default, jnp.result_type(float)) for name in ML_SETTING_NAMES},
                "net": weights}

    def run(params, keys, events: Events, with_info: bool):
        missing = [n for n in (*ML_SETTING_NAMES, "net") if n not in params]
        if missing:
            raise ValueError(f"ml hadronization params lack {missing}; they have {sorted(params)}")
        dtype = events.p4.dtype
        theta = {n: jnp.asarray(params[n], dtype) for n in ML_SETTING_NAMES}
        flav_probs = new_flavour_probs(theta["StringFlav:probStoUD"])
        sp_weights = species_probs(vector_ratios(theta))
        fp = FissionParams(max_mass=theta["ClusterFission:maxMass"], power=theta["ClusterFission:power"],
                           p_split=theta["ClusterFission:pSplit"], flav_probs=flav_probs)
        n_events = events.n_events
        keys = event_keys(keys, n_events)
        c = max_clusters

        g_flav, lp_glue = _sample_gluon_flavours(fold_keys(keys, 1), events.pid, events.mask, flav_probs)
        clusters, bad, overflow, parton = form_clusters(events.p4, events.pid, events.mask, events.colour, g_flav, c)
        n_formed = jnp.sum(clusters.active, axis=1)
        lp_fission = jnp.zeros((n_events,), dtype)
        heavy_left = jnp.zeros((n_events,), jnp.int32)
        for r in range(fission_rounds + 1):
            u_r = uniforms(fold_keys(keys, 100 + r), (c, 4), dtype)
            new, lp_r, over_r, heavy = fission_round(clusters, u_r, fp)
            if r == fission_rounds:  # one more look: how many clusters are still above threshold
                heavy_left = jnp.sum(heavy, axis=1)
                break
            clusters, lp_fission, overflow = new, lp_fission + lp_r, overflow | over_r
        clusters, single_pid, single_p4, light, failed = collapse_light_clusters(clusters)

        # species of the two hadrons (string flavour model), restricted to pairs that fit in M
        m = kin.mass(clusters.p4)
        u = uniforms(fold_keys(keys, 2), (c, 3), dtype)
        flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        bundle = jax.vmap(lambda u_, fp_, fn_, w_: sample_bundle(u_, True, fp_, fn_, sp_weights, flav_probs,
                                                                 w_max=w_, margin=LIGHT_MARGIN))(
            flat(u[..., 0]), flat(clusters.f_pos), flat(clusters.f_neg), flat(jnp.where(clusters.active, m, 1e3)))
        bundle = jax.tree_util.tree_map(lambda a: a.reshape((n_events, c) + a.shape[1:]), bundle)
        lp_species = jnp.sum(jnp.where(clusters.active, bundle.log_prob, 0.0), axis=1)

        # decay angles from the network, in the cluster rest frame about the quark-end axis
        sqrt_s = kin.mass(events.total_p4())
        ctx = cluster_context(clusters.p4, clusters.axis, sqrt_s[:, None], bundle.mass_h, bundle.mass_c,
                              clusters.pos_primary, clusters.neg_primary, clusters.f_pos, clusters.f_neg,
                              bundle.q_new)
        noise = jnp.concatenate([normals(fold_keys(keys, 3), (c, noise_dim), dtype), 2.0 * u[..., 1:2] - 1.0], -1)
        delta = net.apply({"params": params["net"]}, ctx.astype(jnp.float32), noise.astype(jnp.float32))
        cos_t, phi = decay_angles(delta.astype(dtype), u[..., 1], u[..., 2])
        sin_t = safe_sqrt(1.0 - cos_t * cos_t)
        local = kin.four_vector(jnp.zeros_like(cos_t), sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t)
        direction = kin.rotate_z_to(local, rest_axis(clusters.p4, clusters.axis))[..., 1:]
        h1, h2 = two_body_along(clusters.p4, direction, bundle.mass_h, bundle.mass_c)
        act = clusters.active
        h1 = jnp.where(act[..., None], h1, 0.0)
        h2 = jnp.where(act[..., None], h2, 0.0)

        keep = events.mask & ~parton  # non-partons pass through, then single mesons, then the pairs
        cand_valid = jnp.concatenate([keep, light, act, act], axis=1)
        cand = (jnp.concatenate([jnp.where(keep, events.pid, 0), single_pid, jnp.where(act, bundle.pid_h, 0),
                                 jnp.where(act, bundle.pid_c, 0)], axis=1),
                jnp.concatenate([events.p4, single_p4, h1, h2], axis=1))
        out_mask, (out_pid, out_p4), over_out = compact_slots(cand_valid, cand, capacity)
        out_p4 = kin.match_total_momentum(out_p4, out_mask, events.total_p4())
        log_p = lp_glue + lp_fission + lp_species
        out = events.replace(p4=out_p4, pid=out_pid, mask=out_mask, colour=jnp.zeros(out_pid.shape + (2,), jnp.int32),
                             log_weight=events.log_weight + log_p - jax.lax.stop_gradient(log_p))
        out = out.with_status(overflow | over_out, Status.CAPACITY_OVERFLOW)
        out = out.with_status(bad | failed, Status.FAILED_KINEMATICS)
        bad_param = jnp.zeros((), bool)
        for name in ML_SETTING_NAMES:
            bad_param = bad_param | out_of_range(name, theta[name])
        out = out.with_status(bad_param, Status.PARAM_OUT_OF_RANGE)
        finite = jnp.all(jnp.isfinite(out.p4), axis=(1, 2)) & jnp.isfinite(out.log_weight)
        out = out.with_status(~finite, Status.NONFINITE)
        info = {}
        if with_info:
            charge3 = jnp.asarray(_QUARK_CHARGE3)
            info = {"n_formed": n_formed, "n_clusters": jnp.sum(act, axis=1) + jnp.sum(light, axis=1),
                    "n_light": jnp.sum(light, axis=1), "heavy_left": heavy_left,
                    "cluster_active": act, "cluster_p4": clusters.p4, "cluster_mass": m,
                    "cluster_charge3": jnp.where(act, charge3[clusters.f_pos - 1] - charge3[clusters.f_neg - 1], 0),
                    "hadron_p4": jnp.stack([h1, h2], axis=2),
                    "hadron_pid": jnp.stack([jnp.where(act, bundle.pid_h, 0), jnp.where(act, bundle.pid_c, 0)], 2),
                    "cos_theta": jnp.where(act, cos_t, 0.0), "context": ctx,
                    "light": light, "light_pid": single_pid,
                    "light_charge3": jnp.where(light, particles.charge3(single_pid), 0),
                    "light_cluster_charge3": jnp.where(
                        light, charge3[clusters.f_pos - 1] - charge3[clusters.f_neg - 1], 0)}
        return out, info

    return Stage(init=init, apply=lambda p, k, ev: run(p, k, ev, False)[0],
                 diagnose=lambda p, k, ev: run(p, k, ev, True))
