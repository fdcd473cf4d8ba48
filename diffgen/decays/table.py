"""Decay channels of the unstable hadrons (and τ, μ) of :data:`diffgen.particles.TABLE`.

Branching fractions are the PDG 2024 Review of Particle Physics values (S. Navas et al., Phys. Rev. D 110
(2024) 030001, summary tables), rounded as written. Channels are listed for the particle with the
positive PDG code; the antiparticle (negative code) decays into the charge-conjugated channel (every
daughter that is not its own antiparticle changes sign). Each mother's listed fractions are rescaled to
sum to one, as Pythia 8 does with its own tables: an unlisted remainder (typically < 1 % for light
hadrons) is shared out in proportion.

What is approximate, and why:

* Multi-pion final states are written through their resonant substructure so that every channel has at
  most three daughters (e.g. D0 → K−π+π+π− as K−π+ρ0, τ− → π−π+π−ν as ρ0π−ν, the a1's main mode).
* Charm (D, D_s) tables hold the largest exclusive and semileptonic PDG modes, which cover 60–80 % of
  each width; the rest is shared out in proportion.
* B, B_s: b̄ → c̄ transitions built from one template per spectator quark: semileptonic D(*)ℓν with the
  inclusive ℓν X rate (10.6 % per light lepton) given to the exclusive D and D* modes; hadronic
  b̄ → c̄ud̄ (≈ 55 %) as D(*) plus one or two light mesons standing for the W+ → ud̄ system and the
  multi-body states, a share of them with an s s̄ pair (D(*) K K̄(*), D* φ π) or a baryon pair
  (Λ̄c− N ρ/π, D(*) Λ Σ̄) popped; b̄ → c̄cs̄ (≈ 16 %) as D(*)D_s(*)(π), D(*)D(*)K and charmonium K.
  The numbers are tuned so that the mean charged multiplicity of the decay (with Pythia's default set
  of decaying particles: 4.91 B+, 5.12 B0, 4.63 B_s) lies near the LEP b-hadron average (4.97 ± 0.07,
  PDG) and within 12 % of Pythia 8.3's (5.24, 5.51, 5.23), and that the B+/B0 average holds PDG's
  inclusive strange and baryon yields per decay: K0/K̄0 0.65 (PDG 0.64 ± 0.04), K± 0.76
  (0.789 ± 0.025), φ 0.029 (0.034), Λ/Λ̄ 0.030 (0.040 ± 0.005); without the s s̄ and baryon pairs the
  K_S per Z → hadrons event fell 4 % short of Pythia's. They are not exclusive measurements.
* τ decays are unpolarised; semileptonic, leptonic and Dalitz decays use flat phase space.
* η_c, J/ψ, Υ(1S), η_b: leptonic and radiative modes at their PDG values; the gluonic bulk is represented
  by two- and three-meson "proxy" channels (isospin-symmetric), so their multiplicities are only
  roughly right (Υ and η_b about 25 % below Pythia's).
* B0 and B_s0 mixing: a B0 (B_s0) decays as its antiparticle with the time-integrated probability
  χ_d = 0.1858 (χ_s = 0.4993), PDG 2024.

Example:
    >>> from diffgen.decays.table import branching_table
    >>> t = branching_table()
    >>> round(sum(br for br, _ in t[111]), 12)
    1.0
    >>> [d for _, d in t[310]]
    [(211, -211), (111, 111)]
"""

from __future__ import annotations

from functools import cache

from diffgen import particles

__all__ = ["DECAYS", "DEFAULT_STABLE", "MIXING", "SELF_CONJUGATE", "branching_table", "conjugate",
           "decaying_codes", "chain_depth", "mean_multiplicity", "mass_of", "charge3_of", "RAW_SUM"]

# --- PDG codes used below -------------------------------------------------------------------------
E, NUE, MU, NUMU, TAU, NUTAU, GAMMA = 11, 12, 13, 14, 15, 16, 22
PI0, PIP, ETA, ETAP, KL, KS, K0, KP = 111, 211, 221, 331, 130, 310, 311, 321
RHO0, RHOP, OMEGA, PHI, KST0, KSTP = 113, 213, 223, 333, 313, 323
DP, D0, DSP, DSTP, DST0, DSSTP = 411, 421, 431, 413, 423, 433
B0, BP, BS, BST0, BSTP, BSST = 511, 521, 531, 513, 523, 533
ETAC, JPSI, ETAB, UPS = 441, 443, 551, 553
P, N, LAM, SIGP, SIG0, SIGM, XI0, XIM, OMEGAM = 2212, 2112, 3122, 3222, 3212, 3112, 3322, 3312, 3334
LAMC = 4122
DPP, DELP, DEL0, DELM = 2224, 2214, 2114, 1114

#: Codes that are their own antiparticle (a negative code is never produced for them).
SELF_CONJUGATE = frozenset({GAMMA, 21, 23, PI0, RHO0, KL, KS, ETA, OMEGA, ETAP, PHI, ETAC, JPSI, ETAB, UPS})

#: Pythia 8's default rule (ParticleDecays, "mayDecay"): particles with cτ0 > 1000 mm are not decayed.
#: That keeps π± (7.8 m), K± (3.7 m), K_L (15.3 m), μ± and n stable, and decays K_S (26.8 mm), Λ, Σ±, Ξ,
#: Ω and everything shorter-lived. p, γ, e, ν have no decays at all.
DEFAULT_STABLE: tuple[int, ...] = (PIP, KP, KL, P, N, GAMMA, E, MU, NUE, NUMU, NUTAU)

#: Time-integrated mixing probabilities χ (PDG 2024): the neutral B decays as its antiparticle.
MIXING: dict[int, float] = {B0: 0.1858, BS: 0.4993}

_T = tuple[tuple[float, tuple[int, ...]], ...]


def _iso(total: float, *channels: tuple[float, tuple[int, ...]]) -> list[tuple[float, tuple[int, ...]]]:
    """Split ``total`` over ``channels`` given as (relative weight, daughters)."""
    s = sum(w for w, _ in channels)
    return [(total * w / s, d) for w, d in channels]


def _rest(listed: list, *proxies: tuple[float, tuple[int, ...]]) -> _T:
    """``listed`` modes plus ``proxies`` (relative weight, daughters) sharing the remainder 1 − Σ listed."""
    rest = 1.0 - sum(br for br, _ in listed)
    if rest < 0:
        raise ValueError(f"listed branching fractions exceed one: {listed}")
    return tuple(listed) + tuple(_iso(rest, *proxies))


def _b_meson(dbar: int, dbar_st: int, k_spec: int, n_spec: int, other: list) -> _T:
    """Approximate b̄ → c̄ table of a B meson with spectator-flavour anti-D mesons ``dbar`` (pseudoscalar)
    and ``dbar_st`` (vector); ``k_spec`` is the K (or φ) made with the spectator in b̄ → c̄cs̄ → (cc̄)s̄,
    ``n_spec`` the baryon (p, n, Λ) made with it in the baryonic modes; ``other`` are (BR %, daughters)
    modes peculiar to the spectator (D** → D(*)π with the other charge, charmless, D D K). The remainder
    of the width (the many-body b̄ → c̄ud̄ states, ≈ 33 %) goes to D(*) + two light mesons: two vector
    mesons, or, in 41 % of it, a K K̄ pair (an s s̄ popped next to the W+ → u d̄). Values in % (see
    module docstring)."""
    ch = [
        # semileptonic: inclusive B → ℓν X = 10.6 % per light lepton (PDG 2024: 10.99 % B+, 10.33 % B0),
        # the D** ℓν part (≈ 2.7 %) given to D and D*
        (3.0, (dbar, -E, NUE)), (7.6, (dbar_st, -E, NUE)),
        (3.0, (dbar, -MU, NUMU)), (7.6, (dbar_st, -MU, NUMU)),
        (0.9, (dbar, -TAU, NUTAU)), (1.6, (dbar_st, -TAU, NUTAU)),
        # b̄ → c̄ u d̄, few-body
        (0.5, (dbar, PIP)), (0.5, (dbar_st, PIP)), (1.3, (dbar, RHOP)), (1.0, (dbar_st, RHOP)),
        (2.0, (dbar, PIP, RHO0)), (3.0, (dbar_st, PIP, RHO0)),  # D(*) a1+
        (1.5, (dbar, PIP, OMEGA)), (1.5, (dbar_st, PIP, OMEGA)),
        (1.0, (dbar, RHOP, ETA)), (1.0, (dbar_st, RHOP, ETAP)),
        # b̄ → c̄ u d̄ with an s s̄ pair as a φ (B → φ X = 3.4 %, PDG)
        (1.5, (dbar_st, PHI, PIP)),
        # b̄ → c̄ u d̄ with a popped baryon pair (B → baryons X = 6.8 %, Λ X = 4.0 %, PDG): Λ̄c− and the
        # spectator's baryon, or D̄ with a strange baryon–antibaryon pair
        (1.0, (-LAMC, n_spec, PIP)), (2.0, (-LAMC, n_spec, RHOP)),
        (1.0, (dbar, LAM, -SIGM)), (1.0, (dbar_st, SIGP, -LAM)),
        # b̄ → c̄ c s̄: D(*) D_s(*)(π)
        (1.0, (dbar, DSP)), (0.8, (dbar_st, DSP)), (0.8, (dbar, DSSTP)), (1.7, (dbar_st, DSSTP)),
        (1.5, (dbar_st, DSP, PI0)), (1.5, (dbar, DSSTP, PI0)), (1.0, (dbar_st, DSSTP, RHO0)),
        # charmonium
        (0.3, (JPSI, k_spec)), (0.2, (ETAC, k_spec)),
    ]
    ch = [(br / 100.0, d) for br, d in ch + other]
    return _rest(ch, (1, (dbar, RHOP, RHO0)), (1, (dbar_st, RHOP, RHO0)),
                 (1, (dbar, RHOP, OMEGA)), (1, (dbar_st, RHOP, OMEGA)),
                 (0.7, (dbar, KSTP, -KST0)), (0.7, (dbar_st, KSTP, -KST0)),
                 (0.7, (dbar_st, KP, -KST0)), (0.7, (dbar_st, KSTP, -K0)))


# Proxies for the gluonic decays of charmonium (three light mesons, ≈ 4 charged) and bottomonium
# (three vector mesons, ≈ 5.5 charged; Pythia's string model gives ≈ 8).
_GLUONIC_CC = ((3, (OMEGA, PIP, -PIP)), (3, (RHO0, PIP, -PIP)), (2, (RHOP, -PIP, RHO0)), (2, (-RHOP, PIP, RHO0)),
               (2, (RHOP, -RHOP, RHO0)), (1, (KSTP, -KP, RHO0)), (1, (-KSTP, KP, RHO0)),
               (1, (KST0, -KP, RHOP)), (1, (-KST0, KP, -RHOP)), (1, (OMEGA, ETA, RHO0)))
_GLUONIC_BB = ((2, (RHO0, RHO0, OMEGA)), (2, (RHOP, -RHOP, OMEGA)), (2, (OMEGA, OMEGA, RHO0)),
               (1, (ETAP, OMEGA, RHO0)), (1, (PHI, OMEGA, RHO0)), (1, (KSTP, -KSTP, RHO0)),
               (1, (KST0, -KST0, RHO0)), (1, (RHOP, -RHOP, RHO0)))


# --- The tables: mother (positive code) -> ((BR, daughters), ...) -------------------------------
DECAYS: dict[int, _T] = {
    # light unflavoured mesons
    PI0: ((0.98823, (GAMMA, GAMMA)), (0.01174, (E, -E, GAMMA))),
    ETA: ((0.3936, (GAMMA, GAMMA)), (0.3256, (PI0, PI0, PI0)), (0.2302, (PIP, -PIP, PI0)),
          (0.0428, (PIP, -PIP, GAMMA)), (0.0069, (E, -E, GAMMA))),
    ETAP: ((0.425, (PIP, -PIP, ETA)), (0.295, (RHO0, GAMMA)), (0.224, (PI0, PI0, ETA)),
           (0.0252, (OMEGA, GAMMA)), (0.02307, (GAMMA, GAMMA)), (0.00250, (PI0, PI0, PI0)),
           (0.00361, (PIP, -PIP, PI0))),
    RHO0: ((1.0, (PIP, -PIP)),),
    RHOP: ((1.0, (PIP, PI0)),),
    OMEGA: ((0.892, (PIP, -PIP, PI0)), (0.0833, (PI0, GAMMA)), (0.0153, (PIP, -PIP))),
    PHI: ((0.491, (KP, -KP)), (0.339, (KL, KS)),
          *_iso(0.154, (1, (RHOP, -PIP)), (1, (RHO0, PI0)), (1, (-RHOP, PIP))),  # ρπ + π+π−π0
          (0.01303, (ETA, GAMMA)), (0.00132, (PI0, GAMMA))),
    # strange mesons; K* → Kπ with the isospin Clebsch–Gordan weights 2/3, 1/3
    KST0: ((2 / 3, (KP, -PIP)), (1 / 3, (K0, PI0))),
    KSTP: ((2 / 3, (K0, PIP)), (1 / 3, (KP, PI0))),
    K0: ((0.5, (KS,)), (0.5, (KL,))),
    KS: ((0.6920, (PIP, -PIP)), (0.3069, (PI0, PI0))),
    # long-lived: stable by default, decayed only when removed from ``stable``
    KL: ((0.4055 / 2, (PIP, E, -NUE)), (0.4055 / 2, (-PIP, -E, NUE)),
         (0.2704 / 2, (PIP, MU, -NUMU)), (0.2704 / 2, (-PIP, -MU, NUMU)),
         (0.1952, (PI0, PI0, PI0)), (0.1254, (PIP, -PIP, PI0))),
    KP: ((0.6356, (-MU, NUMU)), (0.2067, (PIP, PI0)), (0.05583, (PIP, PIP, -PIP)),
         (0.0507, (PI0, -E, NUE)), (0.03352, (PI0, -MU, NUMU)), (0.01760, (PIP, PI0, PI0))),
    PIP: ((0.999877, (-MU, NUMU)), (1.230e-4, (-E, NUE))),
    MU: ((1.0, (E, -NUE, NUMU)),),
    # τ−: the unlisted 6.4 % (π−3π0ν, 3ππ0ν beyond ωπ, Kππν, 5π) shared by the multi-pion proxies
    TAU: _rest([(0.1782, (E, -NUE, NUTAU)), (0.1739, (MU, -NUMU, NUTAU)), (0.1082, (-PIP, NUTAU)),
                (0.00696, (-KP, NUTAU)), (0.2549, (-RHOP, NUTAU)),
                (0.0926, (-RHOP, PI0, NUTAU)),  # π− 2π0 ν via a1 → ρπ
                (0.0899, (RHO0, -PIP, NUTAU)),  # π− π+ π− ν via a1 → ρπ
                (0.0195, (OMEGA, -PIP, NUTAU)), (0.0120, (-KSTP, NUTAU))],
               (1, (-RHOP, PI0, NUTAU)), (1, (RHO0, -PIP, NUTAU)), (1, (OMEGA, -PIP, NUTAU))),
    # charm: D* (PDG 2024)
    DSTP: ((0.677, (D0, PIP)), (0.307, (DP, PI0)), (0.016, (DP, GAMMA))),
    DST0: ((0.647, (D0, PI0)), (0.353, (D0, GAMMA))),
    DSSTP: ((0.936, (DSP, GAMMA)), (0.0577, (DSP, PI0))),
    # D0 = cū: largest modes (K̄0 = 2 × K_S rates); semileptonic (13 %) as measured; the unlisted
    # hadronic remainder (≈ 25 %, mostly ≥ 4-body) goes to K(*) + two-meson proxies
    D0: _rest([(0.03947, (-KP, PIP)), (0.112, (-KP, RHOP)), (0.0248, (-K0, PI0)), (0.0560, (-K0, PIP, -PIP)),
               (0.0822, (-KP, PIP, RHO0)), (0.0886, (-KP, RHOP, PI0)), (0.0222, (-K0, OMEGA)),
               (0.082, (-K0, -PIP, RHOP)), (0.0101, (-K0, ETA)), (0.0188, (-K0, ETAP)), (0.0182, (-K0, PI0, PI0)),
               (0.027, (-KP, PIP, OMEGA)), (0.0188, (-KP, PIP, ETA)),
               (0.03549, (-KP, -E, NUE)), (0.0341, (-KP, -MU, NUMU)), (0.0215, (-KSTP, -E, NUE)),
               (0.0189, (-KSTP, -MU, NUMU)), (0.00291, (-PIP, -E, NUE)), (0.00267, (-PIP, -MU, NUMU)),
               (0.001454, (PIP, -PIP)), (0.00408, (KP, -KP)), (0.0149, (PIP, -PIP, PI0)),
               (0.00756, (PIP, -PIP, RHO0))],
              (1, (-KP, PIP, RHO0)), (2, (-KSTP, RHOP)), (1, (-KST0, RHOP, -PIP)), (1, (-K0, RHO0, PI0)),
              (1, (-KP, PIP, OMEGA))),
    # D+ = cd̄; semileptonic as measured (inclusive e+ X 16.07 %)
    DP: _rest([(0.0938, (-KP, PIP, PIP)), (0.0312, (-K0, PIP)), (0.147, (-K0, RHOP)),
               (0.0625, (-KP, PIP, RHOP)), (0.0594, (-K0, PIP, RHO0)), (0.026, (-K0, PIP, ETA)),
               (0.0872, (-K0, -E, NUE)), (0.0876, (-K0, -MU, NUMU)),
               (0.0540, (-KST0, -E, NUE)), (0.0527, (-KST0, -MU, NUMU)), (0.00372, (PI0, -E, NUE)),
               (0.00111, (ETA, -E, NUE)), (0.0061, (KP, -K0)), (0.0057, (PHI, PIP)), (0.001247, (PIP, PI0)),
               (0.00377, (ETA, PIP)), (0.00497, (ETAP, PIP)), (0.00327, (PIP, PIP, -PIP))],
              (1, (-K0, PIP, RHO0)), (1, (-KP, PIP, RHOP)), (1, (-K0, RHOP, PI0)), (2, (-KST0, RHOP))),
    # D_s+ = cs̄
    DSP: _rest([(0.045, (PHI, PIP)), (0.0295, (KP, -K0)), (0.0168, (ETA, PIP)), (0.0394, (ETAP, PIP)),
                (0.089, (ETA, RHOP)), (0.058, (ETAP, RHOP)), (0.056, (PHI, RHOP)), (0.0258, (-KST0, KP)),
                (0.054, (KSTP, -K0)), (0.0019, (OMEGA, PIP)), (0.0108, (PIP, PIP, -PIP)),
                (0.028, (OMEGA, PIP, PI0)), (0.016, (OMEGA, PIP, RHO0)),
                (0.0536, (-TAU, NUTAU)), (0.00543, (-MU, NUMU)), (0.0234, (PHI, -E, NUE)),
                (0.0234, (PHI, -MU, NUMU)), (0.0229, (ETA, -E, NUE)), (0.0224, (ETA, -MU, NUMU)),
                (0.0074, (ETAP, -E, NUE)), (0.0074, (ETAP, -MU, NUMU)), (0.0034, (K0, -E, NUE))],
               (1, (ETA, RHOP, PI0)), (1, (OMEGA, RHOP)), (1, (KP, -K0, PI0)), (1, (ETAP, RHOP, PI0))),
    # bottom (approximate, see module docstring); B* → Bγ ≈ 100 %
    BP: _b_meson(-D0, -DST0, KP, P, [
        (3.0, (-DP, PIP, RHOP)), (4.0, (-DSTP, PIP, RHOP)),  # D̄** → D(*)−π+
        (1.5, (-D0, D0, KP)), (1.5, (-DST0, D0, KP)), (1.5, (-D0, DP, K0)), (1.5, (-DST0, DSTP, K0)),
        (0.3, (JPSI, KSTP)), (0.5, (RHOP, RHO0)), (0.3, (RHOP, OMEGA)), (0.3, (KST0, RHOP)),
    ]),
    B0: _b_meson(-DP, -DSTP, K0, N, [
        (3.0, (-D0, -PIP, RHOP)), (4.0, (-DST0, -PIP, RHOP)),
        (1.5, (-DP, D0, KP)), (1.5, (-DSTP, D0, KP)), (1.5, (-DP, DP, K0)), (1.5, (-DSTP, DSTP, K0)),
        (0.3, (JPSI, KST0)), (0.5, (RHOP, -RHOP)), (0.3, (RHO0, OMEGA)), (0.3, (KSTP, -RHOP)),
    ]),
    BS: _b_meson(-DSP, -DSSTP, PHI, LAM, [
        (3.0, (-D0, -KP, RHOP)), (2.0, (-DST0, -KP, RHOP)), (2.0, (-DSTP, -K0, RHOP)),
        (1.5, (-DSP, D0, KP)), (1.5, (-DSSTP, D0, KP)), (1.5, (-DSP, DP, K0)), (1.5, (-DSSTP, DSTP, K0)),
        (0.3, (JPSI, ETA)), (0.5, (-KSTP, RHOP)), (0.3, (-KST0, RHO0)), (0.3, (PHI, RHO0)),
    ]),
    BST0: ((1.0, (B0, GAMMA)),),
    BSTP: ((1.0, (BP, GAMMA)),),
    BSST: ((1.0, (BS, GAMMA)),),
    # charmonium, bottomonium: measured modes + isospin-symmetric proxies for the gluonic bulk
    ETAC: _rest([*_iso(0.041, (2, (ETAP, PIP, -PIP)), (1, (ETAP, PI0, PI0))),
                 *_iso(0.073, (2, (KP, -K0, -PIP)), (2, (-KP, K0, PIP)), (1, (KP, -KP, PI0)), (1, (K0, -K0, PI0))),
                 *_iso(0.017, (2, (ETA, PIP, -PIP)), (1, (ETA, PI0, PI0))),
                 *_iso(0.018, (2, (RHOP, -RHOP)), (1, (RHO0, RHO0))),
                 *_iso(0.007, (1, (KSTP, -KSTP)), (1, (KST0, -KST0))),
                 (0.0018, (PHI, PHI)), (0.002, (OMEGA, OMEGA)), (0.0015, (P, -P)), (1.6e-4, (GAMMA, GAMMA))],
                *_GLUONIC_CC),
    JPSI: _rest([(0.05971, (E, -E)), (0.05961, (MU, -MU)), (0.0141, (ETAC, GAMMA)),
                 *_iso(0.0169, (1, (RHOP, -PIP)), (1, (RHO0, PI0)), (1, (-RHOP, PIP))),
                 (0.00212, (P, -P)), (0.00174, (OMEGA, ETA))],
                *_GLUONIC_CC),
    ETAB: _iso(1.0, *_GLUONIC_BB),
    UPS: _rest([(0.0238, (E, -E)), (0.0248, (MU, -MU)), (0.0260, (TAU, -TAU))], *_GLUONIC_BB),
    # baryons
    LAM: ((0.639, (P, -PIP)), (0.358, (N, PI0))),
    SIGP: ((0.5157, (P, PI0)), (0.4831, (N, PIP))),
    SIG0: ((1.0, (LAM, GAMMA)),),
    SIGM: ((0.99848, (N, -PIP)),),
    XI0: ((0.99524, (LAM, PI0)),),
    XIM: ((0.99887, (LAM, -PIP)),),
    OMEGAM: ((0.678, (LAM, -KP)), (0.236, (XI0, -PIP)), (0.086, (XIM, PI0))),
    # Δ(1232) → Nπ (99.4 %; Nγ neglected) with isospin weights
    DPP: ((1.0, (P, PIP)),),
    DELP: ((2 / 3, (P, PI0)), (1 / 3, (N, PIP))),
    DEL0: ((2 / 3, (N, PI0)), (1 / 3, (P, -PIP))),
    DELM: ((1.0, (N, -PIP)),),
}

# --- Baryons that string fragmentation makes beyond the octet, Δ and Ω (masses in particles.TABLE) ------
XICP, XIC0, LAMB = 4232, 4132, 5122
OMC, XIBM, XIB0, OMB = 4332, 5132, 5232, 5332


def _b_baryon(charmed: int) -> _T:
    """b → c table of a b baryon decaying to the charmed baryon ``charmed`` (approximate, like the B's)."""
    listed = [(0.105, (charmed, E, -NUE)), (0.105, (charmed, MU, -NUMU)), (0.02, (charmed, TAU, -NUTAU)),
              (0.0049, (charmed, -PIP)), (0.015, (charmed, -RHOP)), (0.03, (charmed, -PIP, RHO0)),
              (0.011, (charmed, -DSP)), (0.02, (charmed, -D0, -KP))]
    return _rest(listed, (1, (charmed, -RHOP, RHO0)), (1, (charmed, -RHOP, OMEGA)), (1, (charmed, -PIP, OMEGA)))


_BARYON_DECAYS: dict[int, _T] = {
    # Σ(1385) → Λπ 87.0 %, Σπ 11.7 % (shared by the two charge states), Λγ 1.25 % (Σ*0)
    3224: ((0.870, (LAM, PIP)), (0.0585, (SIGP, PI0)), (0.0585, (SIG0, PIP))),
    3214: ((0.870, (LAM, PI0)), (0.0585, (SIGP, -PIP)), (0.0585, (SIGM, PIP)), (0.0125, (LAM, GAMMA))),
    3114: ((0.870, (LAM, -PIP)), (0.0585, (SIG0, -PIP)), (0.0585, (SIGM, PI0))),
    # Ξ(1530) → Ξπ 100 %, isospin 2/3, 1/3
    3324: ((2 / 3, (XIM, PIP)), (1 / 3, (XI0, PI0))),
    3314: ((2 / 3, (XI0, -PIP)), (1 / 3, (XIM, PI0))),
    # Σ_c(2455), Σ_c(2520) → Λ_c π ≈ 100 %
    4222: ((1.0, (LAMC, PIP)),), 4212: ((1.0, (LAMC, PI0)),), 4112: ((1.0, (LAMC, -PIP)),),
    4224: ((1.0, (LAMC, PIP)),), 4214: ((1.0, (LAMC, PI0)),), 4114: ((1.0, (LAMC, -PIP)),),
    # Λ_c+: largest PDG 2024 modes (p K̄0 = 2 × p K_S), remainder as proxies
    LAMC: _rest([(0.0624, (P, -KP, PIP)), (0.0318, (P, -K0)), (0.0129, (LAM, PIP)), (0.0701, (LAM, PIP, PI0)),
                 (0.0361, (LAM, PIP, RHO0)), (0.0127, (SIG0, PIP)), (0.0125, (SIGP, PI0)), (0.045, (SIGP, RHO0)),
                 (0.017, (SIGP, OMEGA)), (0.0392, (P, -K0, PI0)), (0.0318, (P, -K0, RHO0)), (0.046, (P, -KP, RHOP)),
                 (0.0356, (LAM, -E, NUE)), (0.0348, (LAM, -MU, NUMU)), (0.0062, (XIM, KP, PIP))],
                (1, (P, -KST0, PI0)), (1, (LAM, RHOP, PI0)), (1, (SIGP, PIP, -PIP)), (1, (P, -K0, OMEGA))),
    XICP: _rest([(0.029, (XIM, PIP, PIP)), (0.016, (XI0, PIP)), (0.07, (XI0, -E, NUE)), (0.07, (XI0, -MU, NUMU))],
                (1, (LAM, -K0, PIP)), (1, (SIGP, -KP, PIP)), (1, (XI0, PIP, RHO0)), (1, (XIM, PIP, RHOP))),
    XIC0: _rest([(0.0143, (XIM, PIP)), (0.0105, (XIM, -E, NUE)), (0.0105, (XIM, -MU, NUMU)),
                 (0.0145, (LAM, -KP, PIP))],
                (1, (XIM, PIP, RHO0)), (1, (XI0, RHOP, -PIP)), (1, (LAM, -K0, RHO0)), (1, (XIM, RHOP, PI0))),
    # b baryons: Σ_b(*) → Λ_b π; Λ_b, Ξ_b → charmed baryon + X (approximate)
    5222: ((1.0, (LAMB, PIP)),), 5212: ((1.0, (LAMB, PI0)),), 5112: ((1.0, (LAMB, -PIP)),),
    5224: ((1.0, (LAMB, PIP)),), 5214: ((1.0, (LAMB, PI0)),), 5114: ((1.0, (LAMB, -PIP)),),
    LAMB: _b_baryon(LAMC),
    XIBM: _b_baryon(XIC0),
    XIB0: _b_baryon(XICP),
    # Ξ'_c → Ξ_c γ and Ω_c(2770) → Ω_c γ (the only modes seen; below the pion thresholds)
    4322: ((1.0, (XICP, GAMMA)),), 4312: ((1.0, (XIC0, GAMMA)),), 4334: ((1.0, (OMC, GAMMA)),),
    # Ξ_c(2645) → Ξ_c π, isospin 2/3, 1/3
    4324: ((2 / 3, (XIC0, PIP)), (1 / 3, (XICP, PI0))), 4314: ((2 / 3, (XICP, -PIP)), (1 / 3, (XIC0, PI0))),
    # Ω_c0: PDG 2024 gives only ratios to Ω−π+ (Ω−π+π0 1.80, Ξ−K̄0π+ 2.12, Ξ0K−π+ 1.20, Ω−e+ν 1.98);
    # these relative rates stand for the whole width (proxies, like the D tables' remainder)
    OMC: _iso(1.0, (1.0, (OMEGAM, PIP)), (1.8, (OMEGAM, RHOP)), (2.12, (XIM, -K0, PIP)),
              (1.2, (XI0, -KP, PIP)), (1.98, (OMEGAM, -E, NUE)), (1.98, (OMEGAM, -MU, NUMU))),
    # Ξ'_b− → Ξ_b0 π− (seen); Ξ'_b0 (not observed, below Ξ_b π) → Ξ_b0 γ; Ξ_b(5945/5955) → Ξ_b π;
    # Ω*_b → Ω_b γ; Ω_b → Ω_c + X like the other b baryons
    5312: ((1.0, (XIB0, -PIP)),), 5322: ((1.0, (XIB0, GAMMA)),),
    5324: ((2 / 3, (XIBM, PIP)), (1 / 3, (XIB0, PI0))), 5314: ((2 / 3, (XIB0, -PIP)), (1 / 3, (XIBM, PI0))),
    OMB: _b_baryon(OMC), 5334: ((1.0, (OMB, GAMMA)),),
}
DECAYS.update(_BARYON_DECAYS)

#: Σ of the listed (un-rescaled) fractions per mother, for documentation and tests.
RAW_SUM: dict[int, float] = {pid: sum(br for br, _ in ch) for pid, ch in DECAYS.items()}

_MASS = {p.pid: p.mass for p in particles.TABLE}
_CHARGE3 = {p.pid: p.charge3 for p in particles.TABLE}


def mass_of(pid: int) -> float:
    """PDG mass (GeV) of a code, host-side, in float64 (antiparticles have the same mass)."""
    return _MASS[abs(int(pid))]


def charge3_of(pid: int) -> int:
    """Three times the electric charge of a code, host-side."""
    c = _CHARGE3[abs(int(pid))]
    return -c if pid < 0 else c


def conjugate(pid: int) -> int:
    """The antiparticle code (the same code for self-conjugate particles)."""
    return pid if abs(pid) in SELF_CONJUGATE else -pid


@cache
def branching_table() -> dict[int, tuple[tuple[float, tuple[int, ...]], ...]]:
    """Rescaled tables: for every mother in :data:`DECAYS`, channels whose fractions sum to one."""
    out = {}
    for pid, ch in DECAYS.items():
        s = sum(br for br, _ in ch)
        out[pid] = tuple((br / s, tuple(d)) for br, d in ch)
    return out


def decaying_codes(stable=DEFAULT_STABLE) -> tuple[int, ...]:
    """Positive codes that the stage decays: those with channels, minus ``stable`` (sorted)."""
    st = {abs(int(s)) for s in stable}
    return tuple(sorted(pid for pid in DECAYS if pid not in st))


def _children(pid: int):
    t = branching_table()
    a = abs(pid)
    for br, ds in t.get(a, ()):
        yield br, (ds if pid > 0 else tuple(conjugate(d) for d in ds))


def chain_depth(stable=DEFAULT_STABLE) -> int:
    """Longest decay chain (number of generations) starting from any mother, given ``stable``."""
    dec = set(decaying_codes(stable))

    @cache
    def depth(a: int) -> int:
        if a not in dec:
            return 0
        return 1 + max(depth(abs(d)) for _, ds in DECAYS[a] for d in ds)

    return max((depth(a) for a in dec), default=0)


def mean_multiplicity(pid: int, stable=DEFAULT_STABLE, charged_only: bool = True) -> float:
    """Expected number of final (stable) particles from one ``pid``, recursively (host-side).

    With ``charged_only`` only charged final particles are counted. The mixing of B0/B_s0 does not
    change multiplicities (charge conjugation), so it is ignored here.
    """
    dec = set(decaying_codes(stable))

    @cache
    def mult(p: int) -> float:
        if abs(p) not in dec:
            return float(charge3_of(p) != 0) if charged_only else 1.0
        return sum(br * sum(mult(d) for d in ds) for br, ds in _children(p))

    return mult(int(pid))
