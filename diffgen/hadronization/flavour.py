"""Flavour and hadron-species selection in string breaks (Pythia 8.3 "Flavour selection").

Flavour codes of string ends. An end is labelled by the colour-triplet object it would hand to the
next hadron: codes 1..5 are the quarks d, u, s, c, b, codes 6..14 the light diquarks
:data:`DIQUARKS` (1103, 2101, 2103, 2203, 3101, 3103, 3201, 3203, 3303) and codes 15..29 the popcorn diquarks
:data:`POPCORN` (see below). At the quark (colour) end of a string a code means that quark or, for 6..29,
the antidiquark; at the antiquark end it means the antiquark or the diquark. A hadron is made of a triplet ``a``
and an antitriplet ``b`` (``a`` = the end flavour and ``b`` = the new flavour at the quark end, the other way
round at the antiquark end): quark–antiquark gives a meson, quark–diquark a baryon, antidiquark–antiquark an
antibaryon, two plain diquark codes nothing, and a popcorn code with a plain diquark holding its
popcorn quark the popcorn meson of their other quarks.

New flavours (Pythia 8.3 ``StringFlav::pickGauss``; :func:`flavour_table`). From a quark end a break makes a
diquark with probability ``probQQtoQ/(1 + probQQtoQ)`` (``StringFlav:probQQtoQ`` = 0.081), otherwise a quark
with u : d : s = 1 : 1 : ``probStoUD``. From a plain diquark end it always makes a quark (the baryon is
completed). The diquark flavour and spin follow Pythia's "q → B B̄" weights ``dWT[0]`` (Pythia's
``StringFlav::init``): they combine ``probStoUD``, ``probSQtoQQ`` (0.915, extra s suppression inside a
diquark), ``probQQ1toQQ0`` (0.0275, spin-1 relative to spin-0 apart from the 3 spin states) and the largest
SU(6) weight of each diquark type; :func:`diquark_probs` writes them out.

Popcorn (``StringFlav:popcornRate`` = 0.5, ``popcornSpair`` = 0.9, ``popcornSmeson`` = 0.5). A new diquark is,
with odds ``popFrac`` (:func:`popcorn_weights`; 0.84 at Monash, i.e. 46 % of the diquarks), a popcorn
diquark (codes 15..29, :data:`POPCORN`: popcorn quark, vertex quark, spin; drawn from Pythia's ``dWT[1]``):
it makes the baryon B as its plain diquark would, and the next step from its end makes the popcorn meson M
of its vertex quark and a new vertex quark, leaving a plain diquark that keeps the popcorn quark
(``dWT[2]``), which the step after completes into B̄: B M B̄ instead of B B̄.

Mesons. The quark q (flavour ``i``) and antiquark q̄' (flavour ``j``) form a meson of spin
0 (pseudoscalar) or 1 (vector) with P(vector) = V/(1+V), V chosen by the heavier flavour:
``StringFlav:mesonUDvector`` (u, d), ``StringFlav:mesonSvector`` (s), and Pythia's fixed
``mesonCvector`` = 0.88, ``mesonBvector`` = 2.20 (not tunable here). The PDG code is
100·max + 10·min + 2J+1, with Pythia's particle/antiparticle sign rule. Flavour-diagonal
light mesons mix (Pythia's ``mesonMix``): uū, dd̄ → (110, 220, 330) with probabilities
(½, ½ sin²α, 1 − ½ − ½ sin²α) and ss̄ → (220, 330) with (cos²α, sin²α), α = 90° − (θ + 54.7°)
for pseudoscalars (θ_PS = −15°) and θ + 54.7° for vectors (θ_V = 36°). An η (η′) is then
kept with probability ``etaSup`` = 0.60 (``etaPrimeSup`` = 0.12).

Baryons (Pythia's ``StringFlav::combine``). A quark q and a diquark (q₁q₂)_s make a spin-½ octet or a
spin-3/2 decuplet baryon with the SU(6) Clebsch–Gordan weights ``baryonCGOct``/``baryonCGDec`` of
the six cases ud0+u, ud0+s, uu1+u, uu1+d, ud1+u, ud1+s (0.75/0, 0.5/0, 0/1, 1/6/1/3, 1/12/2/3,
1/6/1/3), the decuplet weight times ``StringFlav:decupletSup`` (1.0); the pair is kept with
probability Σ/max(Σ of its case pair) (the "SU(6) survival"). Three different flavours in the octet
give a Λ-like or a Σ-like state: Λ-like always from a spin-0 and never from a spin-1 diquark when the
quark is the heaviest, otherwise with probability ¼ (spin 0) or ¾ (spin 1). Codes are Pythia's: the
flavours ordered q₁ ≥ q₂ ≥ q₃ give 1000 q₁ + 100 q₂ + 10 q₃ + 2J+1 (Σ-like, decuplet) or
1000 q₁ + 100 q₃ + 10 q₂ + 2 (Λ-like); c and b quarks with light diquarks give Λc, Σc(*), Ξc('*), Ωc(*)
and their b partners.

Rejections. Pythia re-picks the new flavour and the hadron whenever a combination is rejected (η/η′
suppression, SU(6) survival), so the accepted distribution over (new flavour, species) is the
normalised product p(new) p(species) acc, computed here exactly.

Left out: ``suppressLeadingB`` (off by default), rank-0 diquarks (``assignPopQ``; none in e+e-) and the thermal
model. One more difference: the closing hadron of a step (made by the new flavour and the other end) is drawn
together with the step, so a diquark cannot be made while the other end of the same string is still a
diquark (Pythia only forbids that for the final two hadrons and otherwise restarts the string); two
diquark codes never close a string.

All discrete choices are sampled by inverse CDF on uniforms and return
``log p`` (differentiable in probStoUD, the vector ratios, probQQtoQ, probSQtoQQ, probQQ1toQQ0,
decupletSup and the three popcorn settings); the caller adds the score term ``log p − stop_gradient(log p)``
to the event weight.

Example:
    >>> import jax.numpy as jnp
    >>> from diffgen.hadronization import flavour as fl
    >>> [fl.baryon_pid(2, 2101), fl.baryon_pid(3, 2101), fl.baryon_pid(4, 2101), fl.baryon_pid(2, 2203)]
    [2212, 3122, 4122, 2224]
    >>> p = fl.diquark_probs(0.217, 0.915, 0.0275)
    >>> round(float(jnp.sum(p)), 6)
    1.0
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.numerics import safe_div, safe_log, safe_sqrt
from diffgen.particles import TABLE

__all__ = [
    "N_FLAV", "N_QUARK", "N_DIQUARK", "N_SPECIES", "DIQUARKS", "POPCORN", "POPCORN_DIQUARK", "NEW_CODES",
    "MESON_CVECTOR", "MESON_BVECTOR", "THETA_PS", "THETA_V", "ETA_SUP", "ETA_PRIME_SUP", "BARYON_CG_OCT",
    "BARYON_CG_DEC", "CONSTITUENT_MASS", "meson_pid", "baryon_pid", "baryon_species", "is_diquark_code",
    "species_probs", "new_flavour_probs", "diquark_probs", "break_flavour_probs", "flavour_table", "popcorn_weights",
    "vector_ratios", "Bundle", "sample_bundle", "min_two_meson_mass", "lightest_meson", "is_strange_hadron",
    "quark_content",
]

N_QUARK = 5  #: quark flavours d, u, s, c, b (code = PDG code)
#: light diquarks that string breaks make (Pythia's codes 1000 q₁ + 100 q₂ + 2s+1); flavour code 6 + index
DIQUARKS = (1103, 2101, 2103, 2203, 3101, 3103, 3201, 3203, 3303)
#: popcorn diquarks (codes 15..29): a diquark made in a B M B̄ break (``StringFlav:popcornRate``), labelled
#: (popcorn quark, vertex quark, 2s+1). The baryon it makes is that of its plain diquark; at the next step
#: from its end it gives away the vertex quark to the popcorn meson and keeps the popcorn quark.
POPCORN = tuple((p, v, s) for p in (1, 2, 3) for v in (1, 2, 3) for s in ((3,) if p == v else (1, 3)))
N_DIQUARK = len(DIQUARKS)
N_FLAV = N_QUARK + N_DIQUARK + len(POPCORN)  #: flavour codes 1..29 of string ends (index = code − 1)
#: flavour codes a string break can make: d, u, s, the nine diquarks and the fifteen popcorn diquarks
NEW_CODES = (1, 2, 3) + tuple(range(N_QUARK + 1, N_FLAV + 1))
#: the plain diquark of each popcorn code (same flavours and spin), i.e. its baryons and its mass
POPCORN_DIQUARK = tuple(1000 * max(p, v) + 100 * min(p, v) + s for p, v, s in POPCORN)
#: species slots per flavour pair: mesons spin (0, 1) × mixing (0, 1, 2); baryons 0 Σ-like, 1 Λ-like, 3 decuplet
N_SPECIES = 6
MESON_CVECTOR = 0.88  #: Pythia 8.3 StringFlav:mesonCvector
MESON_BVECTOR = 2.20  #: Pythia 8.3 StringFlav:mesonBvector
THETA_PS = -15.0  #: Pythia 8.3 StringFlav:thetaPS (degrees)
THETA_V = 36.0  #: Pythia 8.3 StringFlav:thetaV (degrees)
ETA_SUP = 0.60  #: Pythia 8.3 StringFlav:etaSup
ETA_PRIME_SUP = 0.12  #: Pythia 8.3 StringFlav:etaPrimeSup
#: SU(6) octet / decuplet weights of Pythia's StringFlav (ud0+u, ud0+s, uu1+u, uu1+d, ud1+u, ud1+s)
BARYON_CG_OCT = (0.75, 0.5, 0.0, 0.1667, 0.0833, 0.1667)
BARYON_CG_DEC = (0.0, 0.0, 1.0, 0.3333, 0.6667, 0.3333)
#: Pythia 8.3 ParticleDataEntry::CONSTITUENTMASSTABLE (d, u, s, c, b; constituentMass(), used by its stop rule
#: and the mini-string test), not the m0 pole masses (0.33, 0.33, 0.5, 1.5, 4.8)
_QUARK_CONSTITUENT = (0.325, 0.325, 0.50, 1.60, 5.00)
#: constituent masses (GeV) of the flavour codes 1..14 used in the stop rule (Pythia's constituentMass):
#: d, u, s, c, b, then each diquark as the sum of its two quarks (as Pythia's ParticleData does)
CONSTITUENT_MASS = np.array(list(_QUARK_CONSTITUENT)
                            + [_QUARK_CONSTITUENT[d // 1000 - 1] + _QUARK_CONSTITUENT[(d // 100) % 10 - 1]
                               for d in DIQUARKS + POPCORN_DIQUARK])


def is_diquark_code(f):
    """True for the diquark flavour codes 6..29 (plain and popcorn; works on arrays)."""
    return f > N_QUARK


def meson_pid(q: int, qbar: int, spin: int, mix: int = 0) -> int:
    """PDG code of the meson (quark flavour ``q``, antiquark flavour ``qbar``, both 1..5).

    ``mix`` selects 110/220/330 for light flavour-diagonal pairs (0 otherwise).

    >>> meson_pid(2, 1, 0), meson_pid(1, 2, 0), meson_pid(2, 3, 1), meson_pid(5, 1, 0)
    (211, -211, 323, -511)
    """
    code = 1 if spin == 0 else 3
    hi, lo = max(q, qbar), min(q, qbar)
    if hi != lo:
        sign = 1 if hi % 2 == 0 else -1
        if hi == qbar:
            sign = -sign
        return sign * (100 * hi + 10 * lo + code)
    if hi <= 3:
        return (110, 220, 330)[mix] + code
    return 100 * hi + 10 * hi + code


def _mix_probs(q: int, spin: int) -> tuple[float, float, float]:
    theta = THETA_PS if spin == 0 else THETA_V
    alpha = (90.0 - (theta + 54.7)) if spin == 0 else (theta + 54.7)
    s2 = math.sin(math.radians(alpha)) ** 2
    if q <= 2:
        return 0.5, 0.5 * s2, 1.0 - 0.5 - 0.5 * s2
    if q == 3:
        return 0.0, 1.0 - s2, s2
    return 1.0, 0.0, 0.0


def _su6_case(q: int, dq: int) -> int:
    """Pythia's SU(6) case index (0..5) of quark ``q`` joining diquark ``dq`` (see BARYON_CG_OCT)."""
    q1, q2, spin = dq // 1000, (dq // 100) % 10, dq % 10
    case = spin - 1
    if case == 2 and q1 != q2:
        case = 4
    if q not in (q1, q2):
        case += 1
    return case


def baryon_species(q: int, dq: int) -> tuple[tuple[int, float, float], ...]:
    """The baryons quark ``q`` (1..5) and diquark ``dq`` can make: (PDG code, octet share, decuplet share).

    Shares are fractions of ``BARYON_CG_OCT[case]`` and ``BARYON_CG_DEC[case]``: the Σ-like and Λ-like
    octet states split the octet weight, the decuplet state takes the decuplet weight (Pythia's
    ``StringFlav::combine``). Codes are positive (baryons); the three entries are the Σ-like octet,
    the Λ-like octet and the decuplet (a share of 0 where the state does not exist).
    """
    q1, q2, spin = dq // 1000, (dq // 100) % 10, dq % 10
    o1, o2, o3 = sorted((q, q1, q2), reverse=True)
    lam = 0.0
    if o1 > o2 > o3:
        if o1 == q:
            lam = 1.0 if spin == 1 else 0.0
        else:
            lam = 0.25 if spin == 1 else 0.75
    sigma_like = 1000 * o1 + 100 * o2 + 10 * o3 + 2
    lambda_like = 1000 * o1 + 100 * o3 + 10 * o2 + 2
    decuplet = 1000 * o1 + 100 * o2 + 10 * o3 + 4
    return (sigma_like, 1.0 - lam, 0.0), (lambda_like, lam, 0.0), (decuplet, 0.0, 1.0)


def baryon_pid(q: int, dq: int, state: int | None = None) -> int:
    """PDG code of baryon ``state`` (0 Σ-like, 1 Λ-like, 2 decuplet) from ``q`` + ``dq``; by default the most
    likely one at decupletSup = 1.

    >>> baryon_pid(1, 2101), baryon_pid(1, 3201), baryon_pid(1, 3201, 1), baryon_pid(3, 2103, 2)
    (2112, 3212, 3122, 3214)
    """
    sp = baryon_species(q, dq)
    if state is None:
        c = _su6_case(q, dq)
        state = int(np.argmax([o * BARYON_CG_OCT[c] + d * BARYON_CG_DEC[c] for _, o, d in sp]))
    return sp[state][0]


_PDG_MASS = {p.pid: p.mass for p in TABLE}
_BARYON_SLOTS = (0, 1, 3)  #: species slots of the Σ-like, Λ-like and decuplet baryon


def _tables():
    """Static tables over (triplet code a, antitriplet code b, species slot k), all i/f[29, 29, 6]:
    PDG code, fixed meson weight (mixing × η/η′ acceptance), the baryon octet and decuplet shares, and
    per pair the SU(6) case (−1 for mesons and impossible pairs)."""
    shape = (N_FLAV, N_FLAV, N_SPECIES)
    pid = np.zeros(shape, np.int32)
    fixed = np.zeros(shape)
    b_oct = np.zeros(shape)
    b_dec = np.zeros(shape)
    case = np.full((N_FLAV, N_FLAV), -1, np.int32)
    spin = np.zeros(N_SPECIES, np.int32)
    for q in range(1, N_QUARK + 1):
        for qb in range(1, N_QUARK + 1):
            for sp in (0, 1):
                mixes = _mix_probs(q, sp) if q == qb else (1.0, 0.0, 0.0)
                for m in range(3):
                    k = 3 * sp + m
                    spin[k] = sp
                    if mixes[m] <= 0.0:
                        continue
                    code = meson_pid(q, qb, sp, m)
                    if abs(code) not in _PDG_MASS:  # B_c is not in particles.TABLE
                        continue
                    acc = ETA_SUP if code == 221 else ETA_PRIME_SUP if code == 331 else 1.0
                    pid[q - 1, qb - 1, k] = code
                    fixed[q - 1, qb - 1, k] = mixes[m] * acc
        for i, dq in enumerate(DIQUARKS + POPCORN_DIQUARK):
            d = N_QUARK + i  # 0-based index of the diquark code (a popcorn code makes its plain diquark's baryons)
            c = _su6_case(q, dq)
            for (code, s_oct, s_dec), k in zip(baryon_species(q, dq), _BARYON_SLOTS):
                if s_oct * BARYON_CG_OCT[c] + s_dec * BARYON_CG_DEC[c] <= 0.0:
                    continue
                if code not in _PDG_MASS:
                    raise ValueError(f"baryon {code} ({q} + {dq}) is not in diffgen.particles.TABLE")
                for a, b, sign in ((q - 1, d, 1), (d, q - 1, -1)):  # baryon, and antibaryon (antidiquark + q̄)
                    pid[a, b, k] = sign * code
                    b_oct[a, b, k] = s_oct
                    b_dec[a, b, k] = s_dec
                    case[a, b] = c
    vclass = np.zeros((N_FLAV, N_FLAV), np.int32)  # 0 ud, 1 s, 2 c, 3 b (mesons only)
    vclass[:N_QUARK, :N_QUARK] = np.maximum(np.maximum.outer(np.arange(1, 6), np.arange(1, 6)) - 2, 0)
    meson_pair = np.zeros((N_FLAV, N_FLAV), bool)
    meson_pair[:N_QUARK, :N_QUARK] = True
    # popcorn mesons (Pythia's StringFlav::combine of two diquarks: the two vertex quarks). At the colour end
    # a popcorn code P is the antidiquark (p̄ v̄) and the new plain diquark R = (p v′) the antitriplet: the
    # meson is v′ v̄, entry [P, R]; at the anticolour end the new code is the triplet: v v̄′, entry [R, P].
    # These entries are only reached from a popcorn end (flavour_table); closing hadrons never join two
    # diquark codes (sample_bundle).
    for j, (pp, vv, _) in enumerate(POPCORN):
        pc = N_QUARK + N_DIQUARK + j
        for i, dq in enumerate(DIQUARKS):
            q1, q2 = dq // 1000, (dq // 100) % 10
            if pp not in (q1, q2):
                continue
            vn = q1 + q2 - pp  # the new vertex quark
            r = N_QUARK + i
            for a, b, qm, qbm in ((pc, r, vn, vv), (r, pc, vv, vn)):
                pid[a, b], fixed[a, b] = pid[qm - 1, qbm - 1], fixed[qm - 1, qbm - 1]
                vclass[a, b] = vclass[qm - 1, qbm - 1]
                meson_pair[a, b] = True
    return pid, fixed, spin, vclass, b_oct, b_dec, case, meson_pair


_PID, _FIXED, _SPIN, _VCLASS, _B_OCT, _B_DEC, _CASE, _IS_MESON_PAIR = _tables()
_IS_DQ = np.arange(1, N_FLAV + 1) > N_QUARK
_TWO_DIQUARKS = np.logical_and.outer(_IS_DQ, _IS_DQ)  #: pairs that cannot close a string (Pythia's finalTwo)
_MASS = np.vectorize(lambda c: _PDG_MASS.get(abs(int(c)), 0.0))(_PID)  # f[29, 29, 6]; 0 for empty slots
_BIG = 1.0e3


def _su6_sums(decuplet_sup):
    """(Σ, max) per SU(6) case: Σ_i = CGOct_i + decupletSup·CGDec_i and the max over its pair (0,1), (2,3), (4,5)."""
    d = jnp.asarray(decuplet_sup)
    cg_sum = jnp.asarray(BARYON_CG_OCT, d.dtype) + d * jnp.asarray(BARYON_CG_DEC, d.dtype)
    pair_max = jnp.maximum(cg_sum[0::2], cg_sum[1::2])
    return cg_sum, jnp.repeat(pair_max, 2)


def species_probs(vector_ratios, decuplet_sup=1.0):
    """Unnormalised weights of the 6 species slots for every (triplet, antitriplet) code pair, f[29, 29, 6].

    ``vector_ratios``: f[4] (V_ud, V_s, V_c, V_b); ``decuplet_sup``: ``StringFlav:decupletSup``.
    Mesons: P(spin) × mixing × η/η′ acceptance. Baryons: (octet or decuplet weight)/max of the case pair,
    i.e. P(species | accepted) × SU(6) survival probability. Pairs of two diquark codes: 0.
    """
    vr = jnp.asarray(vector_ratios)
    v = vr[jnp.asarray(_VCLASS)]  # [14, 14]
    p_vec = v / (1.0 + v)
    p_spin = jnp.where(jnp.asarray(_SPIN)[None, None, :] == 1, p_vec[..., None], 1.0 - p_vec[..., None])
    meson = p_spin * jnp.asarray(_FIXED, dtype=p_vec.dtype)
    _, cg_max = _su6_sums(jnp.asarray(decuplet_sup, dtype=vr.dtype))
    case = jnp.asarray(np.maximum(_CASE, 0))
    oct_w = jnp.asarray(BARYON_CG_OCT, vr.dtype)[case] / cg_max[case]  # [14, 14]
    dec_w = jnp.asarray(decuplet_sup, vr.dtype) * jnp.asarray(BARYON_CG_DEC, vr.dtype)[case] / cg_max[case]
    baryon = (jnp.asarray(_B_OCT, vr.dtype) * oct_w[..., None] + jnp.asarray(_B_DEC, vr.dtype) * dec_w[..., None])
    return jnp.where(jnp.asarray(_IS_MESON_PAIR)[..., None], meson, baryon)


def new_flavour_probs(prob_s_to_ud):
    """P(d), P(u), P(s) of a new quark–antiquark pair (gluon splitting, meson-only breaks), f[3]."""
    rho = jnp.asarray(prob_s_to_ud)
    w = jnp.stack([jnp.ones_like(rho), jnp.ones_like(rho), rho])
    return w / (2.0 + rho)


def _diquark_weights(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup=1.0):
    """Pythia 8.3's ``dWT[0][0..6]`` (StringFlav::init, case "q → B B̄"), as a list of 7 scalars."""
    rho = jnp.asarray(prob_s_to_ud)
    sq = jnp.asarray(prob_sq_to_qq, rho.dtype)
    q1 = jnp.asarray(prob_qq1_to_qq0, rho.dtype)
    _, cg_max = _su6_sums(jnp.asarray(decuplet_sup, rho.dtype))
    # largest SU(6) weight by diquark type (ud0, ud1, uu1, us0, su0, us1, su1, ss1), relative to ud0
    bar_max = {"ud1": cg_max[4], "uu1": cg_max[2], "us0": cg_max[0], "su0": cg_max[0], "us1": cg_max[4],
               "su1": cg_max[4], "ss1": cg_max[2]}
    # Pythia multiplies half-pair tunnelling factors (√probStoUD, √probSQtoQQ, √probQQ1toQQ0) by the
    # spin × vertex factors (3 or 6 for spin 1, probStoUD for an s vertex quark); the products are
    # polynomials (written out here, so that derivatives are exact at probStoUD = 0 too):
    q_bb_bm = {"ud1": 3.0 * q1, "uu1": 6.0 * q1, "us0": rho * sq, "su0": rho * sq, "us1": 3.0 * rho * q1 * sq,
               "su1": 3.0 * rho * q1 * sq, "ss1": 6.0 * rho * rho * sq * sq * q1}
    w = {k: q_bb_bm[k] * bar_max[k] / cg_max[0] for k in q_bb_bm}
    d0 = (2.0 * (w["su0"] + w["su1"]) + w["ss1"]) / (1.0 + w["ud1"] + w["uu1"] + w["us0"] + w["us1"])
    d1 = 2.0 * (w["us0"] + w["us1"]) / (1.0 + w["ud1"] + w["uu1"])
    # at probStoUD = 0 the s-popcorn weights vanish (d₀ = 0) and d₂, d₄ are never used: 0, not 0/0
    d2 = safe_div(w["ss1"], w["su0"] + w["su1"])
    d3 = w["uu1"] / (1.0 + w["ud1"] + w["uu1"])
    d4 = safe_div(w["su1"], w["su0"])
    d5 = safe_div(w["us1"], w["us0"])
    d6 = w["ud1"]
    return [d0, d1, d2, d3, d4, d5, d6]


def diquark_probs(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup=1.0):
    """Probabilities of the nine :data:`DIQUARKS` when a break makes a diquark, f[9] (sums to one).

    Pythia 8.3's ``StringFlav::pick`` without popcorn: the "popcorn" quark is d : u : s = 1 : 1 : d₀,
    the vertex quark 1 : 1 : d₁ (d₂ if the first is s); two light quarks are equal with probability
    d₃; unequal flavours form spin 1 with probability w/(1 + w), w = d₆ (ud), d₅ (light + s vertex),
    d₄ (s + light vertex); equal flavours are spin 1. (d₀ … d₆ = Pythia's ``dWT[0]``.)
    The weights need probSQtoQQ > 0 and probQQ1toQQ0 > 0 (as Pythia's do).
    """
    d0, d1, d2, d3, d4, d5, d6 = _diquark_weights(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup)
    pop_l = 1.0 / (2.0 + d0)  # each of d, u as popcorn quark
    pop_s = d0 / (2.0 + d0)
    vtx_l = 2.0 / (2.0 + d1)  # light vertex quark after a light popcorn quark
    vtx_s = d1 / (2.0 + d1)
    s_l = 1.0 / (2.0 + d2)  # each light vertex quark after an s popcorn quark
    s_s = d2 / (2.0 + d2)
    same = pop_l * vtx_l * d3  # dd1 or uu1
    ud = 2.0 * pop_l * vtx_l * (1.0 - d3)
    sq_a = pop_l * vtx_s  # light popcorn, s vertex: spin weight d5 (one light flavour)
    sq_b = pop_s * s_l  # s popcorn, light vertex: spin weight d4
    s0 = sq_a / (1.0 + d5) + sq_b / (1.0 + d4)
    s1 = sq_a * d5 / (1.0 + d5) + sq_b * d4 / (1.0 + d4)
    ss = pop_s * s_s
    # order of DIQUARKS: 1103, 2101, 2103, 2203, 3101, 3103, 3201, 3203, 3303
    return jnp.stack([same, ud / (1.0 + d6), ud * d6 / (1.0 + d6), same, s0, s1, s0, s1, ss])


def break_flavour_probs(prob_s_to_ud, prob_qq_to_q=0.0, prob_sq_to_qq=0.915, prob_qq1_to_qq0=0.0275,
                        decuplet_sup=1.0):
    """P(new flavour) of a break at a quark end without popcorn over :data:`NEW_CODES`, f[27].

    Quarks ``new_flavour_probs / (1 + probQQtoQ)``, plain diquarks ``probQQtoQ/(1 + probQQtoQ) ×``
    :func:`diquark_probs`, popcorn diquarks 0 (``popcornRate = 0``; :func:`flavour_table` has popcorn).
    (Given as one row, :func:`sample_bundle` allows only quarks at a diquark end.)
    """
    pq = new_flavour_probs(prob_s_to_ud)
    qq = jnp.asarray(prob_qq_to_q, pq.dtype)
    pd = diquark_probs(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup).astype(pq.dtype)
    return jnp.concatenate([pq / (1.0 + qq), pd * qq / (1.0 + qq), jnp.zeros(len(POPCORN), pq.dtype)])


def _dwt(w):
    """Pythia's seven diquark ratios dWT[case][0..6] from weights by diquark type (ud0 = 1 implied)."""
    light = 1.0 + w["ud1"] + w["uu1"]
    return [(2.0 * (w["su0"] + w["su1"]) + w["ss1"]) / (light + w["us0"] + w["us1"]),
            2.0 * (w["us0"] + w["us1"]) / light, safe_div(w["ss1"], w["su0"] + w["su1"]), w["uu1"] / light,
            safe_div(w["su1"], w["su0"]), safe_div(w["us1"], w["us0"]), w["ud1"]]


def popcorn_weights(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup=1.0, popcorn_rate=0.5,
                    popcorn_spair=0.9, popcorn_smeson=0.5):
    """Pythia 8.3's popcorn weights (``StringFlav::init``): ``(dWT[1], dWT[2], popFrac)``.

    ``dWT[1]`` (7 scalars) are the diquark ratios of a "q → B M B̄" break, its entry 0 (s/u of the popcorn
    quark) already multiplied by ``scbBM[0] · popcornSpair`` as ``StringFlav::pickGauss`` does; ``dWT[2]`` those
    of the "qq → M B" step at a popcorn end (a new vertex quark next to the kept popcorn quark);
    ``popFrac`` the odds of B M B̄ against B B̄ when a break makes a diquark (P = popFrac/(1 + popFrac)).
    Half-pair tunnelling factors are square roots of probStoUD, probSQtoQQ and probQQ1toQQ0, with zero
    gradient at zero (``safe_sqrt``).
    """
    rho = jnp.asarray(prob_s_to_ud)
    sq = jnp.asarray(prob_sq_to_qq, rho.dtype)
    q1 = jnp.asarray(prob_qq1_to_qq0, rho.dtype)
    rate, spair, smeson = (jnp.asarray(x, rho.dtype) for x in (popcorn_rate, popcorn_spair, popcorn_smeson))
    r, t = safe_sqrt(rho), safe_sqrt(q1)
    sr = safe_sqrt(sq)
    cg_sum, cg_max = _su6_sums(jnp.asarray(decuplet_sup, rho.dtype))
    bar_max = {"ud1": cg_max[4], "uu1": cg_max[2], "us0": cg_max[0], "su0": cg_max[0], "us1": cg_max[4],
               "su1": cg_max[4], "ss1": cg_max[2]}
    # spin × vertex factor × half tunnelling (Pythia's qBM), and the full q → B B̄ weight qBB · qBM
    q_bm = {"ud1": 3.0 * t, "uu1": 6.0 * t, "us0": rho * sr, "su0": r * sr, "us1": 3.0 * rho * t * sr,
            "su1": 3.0 * t * r * sr, "ss1": 6.0 * rho * r * sq * t}
    q_bb = {"ud1": 3.0 * q1, "uu1": 6.0 * q1, "us0": rho * sq, "su0": rho * sq, "us1": 3.0 * rho * q1 * sq,
            "su1": 3.0 * rho * q1 * sq, "ss1": 6.0 * rho * rho * sq * sq * q1}
    for k in ("us0", "us1", "ss1"):  # a strange popcorn meson
        q_bm[k] = q_bm[k] * smeson
    u_norm = 1.0 + q_bm["ud1"] + q_bm["uu1"] + q_bm["us0"] + q_bm["us1"]
    scb0 = (2.0 * (q_bm["su0"] + q_bm["su1"]) + q_bm["ss1"]) / u_norm
    # diquark SU(6) survival summed over the quark that tunnels in (Pythia's dMB), relative to ud0
    d_mb = {"ud1": 2.0 * cg_sum[4] + rho * cg_sum[5], "uu1": cg_sum[2] + (1.0 + rho) * cg_sum[3],
            "us0": (1.0 + rho) * cg_sum[0] + cg_sum[1], "us1": (1.0 + rho) * cg_sum[4] + cg_sum[5],
            "ss1": rho * cg_sum[2] + 2.0 * cg_sum[3]}
    d_mb["su0"], d_mb["su1"] = d_mb["us0"], d_mb["us1"]
    d_mb0 = 2.0 * cg_sum[0] + rho * cg_sum[1]
    d_mb = {k: d_mb[k] / d_mb0 * q_bm[k] for k in d_mb}
    q_bm = {k: q_bm[k] * bar_max[k] / cg_max[0] for k in q_bm}
    q_bb = {k: q_bb[k] * bar_max[k] / cg_max[0] for k in q_bb}
    s_norm = scb0 * spair
    pop_frac = (u_norm * rate / 3.0
                * (1.0 + q_bm["ud1"] + q_bm["uu1"] + q_bm["us0"] + q_bm["us1"]
                   + s_norm * (q_bm["su0"] + q_bm["su1"] + 0.5 * q_bm["ss1"]))
                / (1.0 + q_bb["ud1"] + q_bb["uu1"] + 2.0 * (q_bb["us0"] + q_bb["us1"]) + 0.5 * q_bb["ss1"]))
    dwt1 = _dwt(q_bm)
    dwt1[0] = dwt1[0] * s_norm
    return dwt1, _dwt(d_mb), pop_frac


#: [15, 9] the plain diquark (DIQUARKS index) of each popcorn code
_POP_TO_PLAIN = np.zeros((len(POPCORN), N_DIQUARK))
for _j, _dq in enumerate(POPCORN_DIQUARK):
    _POP_TO_PLAIN[_j, DIQUARKS.index(_dq)] = 1.0


def _vertex_given_pop(d):
    """P(vertex quark, spin | popcorn quark) over :data:`POPCORN`, f[3, 15] (rows: popcorn d, u, s), from
    the ratios ``d`` = dWT[case] as Pythia's ``pickGauss`` draws them."""
    _, d1, d2, d3, d4, d5, d6 = d
    rows = []
    for pop in (1, 2, 3):
        probs = []
        for p, v, s in POPCORN:
            if p != pop:
                probs.append(jnp.zeros_like(d1))
                continue
            if pop < 3:
                light = 2.0 / (2.0 + d1)
                pv = light * d3 if v == pop else light * (1.0 - d3) if v < 3 else d1 / (2.0 + d1)
                w = d6 if v < 3 else d5
            else:
                pv = 1.0 / (2.0 + d2) if v < 3 else d2 / (2.0 + d2)
                w = d4
            if v != pop:
                pv = pv * (w if s == 3 else 1.0) / (1.0 + w)
            probs.append(pv)
        rows.append(jnp.stack(probs))
    return jnp.stack(rows)


def flavour_table(prob_s_to_ud, prob_qq_to_q=0.081, prob_sq_to_qq=0.915, prob_qq1_to_qq0=0.0275, decuplet_sup=1.0,
                  popcorn_rate=0.5, popcorn_spair=0.9, popcorn_smeson=0.5):
    """P(new flavour | end flavour) of a break, f[29, 27]: rows the end codes 1..29, columns :data:`NEW_CODES`.

    Pythia 8.3's ``StringFlav::pickGauss`` (Gaussian pT, no thermal model; no rank-0 diquarks in e+e-):

    * quark end: a quark (1 : 1 : probStoUD) with probability 1/(1 + probQQtoQ), else a diquark, which
      is a popcorn diquark (B M B̄) with probability popFrac/(1 + popFrac) (:func:`popcorn_weights`), its
      flavours and spin from dWT[1], otherwise a plain one (B B̄) from dWT[0] (:func:`diquark_probs`);
    * plain diquark end: a quark, completing the baryon;
    * popcorn diquark end: a plain diquark with the same popcorn quark and a new vertex quark and spin
      (dWT[2]); the hadron is the popcorn meson of the two vertex quarks (the species table).

    At ``popcornRate = 0`` the popcorn columns vanish and the quark rows equal :func:`break_flavour_probs`.
    """
    pq = new_flavour_probs(prob_s_to_ud)
    dt = pq.dtype
    qq = jnp.asarray(prob_qq_to_q, dt)
    dwt1, dwt2, pop_frac = popcorn_weights(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup,
                                           popcorn_rate, popcorn_spair, popcorn_smeson)
    plain = diquark_probs(prob_s_to_ud, prob_sq_to_qq, prob_qq1_to_qq0, decuplet_sup).astype(dt)
    s_pop = dwt1[0]
    p_pop = jnp.stack([jnp.ones_like(s_pop), jnp.ones_like(s_pop), s_pop]) / (2.0 + s_pop)
    pop1 = jnp.sum(p_pop[:, None] * _vertex_given_pop(dwt1), axis=0).astype(dt)  # [15]
    f_pop = pop_frac / (1.0 + pop_frac)
    baryon = qq / (1.0 + qq)
    quark_row = jnp.concatenate([pq * (1.0 - baryon), baryon * (1.0 - f_pop) * plain, baryon * f_pop * pop1])
    n_new = quark_row.shape[0]
    plain_row = jnp.concatenate([pq, jnp.zeros(n_new - 3, dt)])
    # popcorn end: its popcorn quark is kept, P(plain diquark | popcorn quark) from dWT[2]
    given = _vertex_given_pop(dwt2).astype(dt) @ jnp.asarray(_POP_TO_PLAIN, dt)  # [3, 9]
    pop_idx = np.array([p - 1 for p, _, _ in POPCORN])
    pop_rows = jnp.concatenate([jnp.zeros((len(POPCORN), 3), dt), given[pop_idx],
                                jnp.zeros((len(POPCORN), len(POPCORN)), dt)], axis=1)
    return jnp.concatenate([jnp.broadcast_to(quark_row, (N_QUARK, n_new)),
                            jnp.broadcast_to(plain_row, (N_DIQUARK, n_new)), pop_rows])


def vector_ratios(params):
    """(V_ud, V_s, V_c, V_b) from a hadronization params dict."""
    vud = jnp.asarray(params["StringFlav:mesonUDvector"])
    vs = jnp.asarray(params["StringFlav:mesonSvector"], dtype=vud.dtype)
    return jnp.stack([vud, vs, jnp.full_like(vud, MESON_CVECTOR), jnp.full_like(vud, MESON_BVECTOR)])


class Bundle(NamedTuple):
    """The discrete choices of one fragmentation step from one string end.

    ``q_new``: flavour code (1..3 quark, 6..14 diquark) of the new pair; ``pid_h``/``mass_h``: the hadron
    made at the chosen end; ``pid_c``/``mass_c``: the hadron that would close the string if the
    step is the last (new flavour joined with the other end); ``log_prob``: log of the
    probability of these choices (differentiable).
    """

    q_new: jax.Array
    pid_h: jax.Array
    mass_h: jax.Array
    pid_c: jax.Array
    mass_c: jax.Array
    log_prob: jax.Array


def _pair_index(from_positive, f_end, f_other, q_new):
    """(triplet, antitriplet) code indices (0-based) of the end hadron and of the closing hadron."""
    qh = jnp.where(from_positive, f_end, q_new)
    qbh = jnp.where(from_positive, q_new, f_end)
    qc = jnp.where(from_positive, q_new, f_other)
    qbc = jnp.where(from_positive, f_other, q_new)
    return qh - 1, qbh - 1, qc - 1, qbc - 1


def sample_bundle(u, from_positive, f_pos, f_neg, sp_weights, flav_probs, w_max=None, margin=0.0):
    """Sample a :class:`Bundle` for a step from the positive (colour) or negative end.

    Args:
        u: a uniform in [0, 1) (one per bundle; shape ``()``, vmapped by the caller).
        from_positive: bool, the step is taken at the quark (colour) end.
        f_pos, f_neg: current end flavour codes (1..14) of the quark and of the antiquark end.
        sp_weights: :func:`species_probs` table; flav_probs: :func:`new_flavour_probs` (f[3]: d, u, s;
            mesons only), :func:`break_flavour_probs` (f[27] over :data:`NEW_CODES`, one row for all ends)
            or :func:`flavour_table` (f[29, 27], by end flavour; needed at popcorn ends).
        w_max: if given, only outcomes with ``mass_h + mass_c + margin <= w_max`` are allowed
            (used for the first step of a light string so that its final two hadrons fit).

    The outcome space is (q_new) × (6 species of the end hadron) × (6 species of the closing
    hadron): P = p(q_new, h) · p(c | q_new), where p(q_new, h) includes the re-pick normalisation
    (η/η′, SU(6) survival, no diquark after a diquark) and p(c | q_new) the closing hadron's species
    choice with its own normalisation (Pythia's ``finalTwo`` retries only that); a q_new that cannot
    close with the other end (two diquarks) has p(c | q_new) = 0.
    """
    n_new = flav_probs.shape[-1]
    f_end = jnp.where(from_positive, f_pos, f_neg)
    f_other = jnp.where(from_positive, f_neg, f_pos)
    qn = jnp.asarray(NEW_CODES if n_new == len(NEW_CODES) else (1, 2, 3)[:n_new])
    qh, qbh, qc, qbc = _pair_index(from_positive, f_end, f_other, qn)  # each [n_new]
    if flav_probs.ndim == 2:  # flavour_table: P(new | end)
        probs = flav_probs[f_end - 1]
    else:  # one row for every end: only quarks after a diquark
        probs = jnp.where(is_diquark_code(f_end) & is_diquark_code(qn), 0.0, flav_probs)
    wh = probs[:, None] * sp_weights[qh, qbh]  # [n_new, 6]
    ph = wh / jnp.sum(wh)
    # two diquark codes never close a string (the table's popcorn mesons are for the step at a popcorn end)
    wc = jnp.where(jnp.asarray(_TWO_DIQUARKS)[qc, qbc][:, None], 0.0, sp_weights[qc, qbc])  # [n_new, 6]
    pc = safe_div(wc, jnp.sum(wc, axis=-1, keepdims=True))
    mh = jnp.asarray(_MASS)[qh, qbh]  # [n_new, 6]
    mc = jnp.asarray(_MASS)[qc, qbc]
    # inverse CDF of the outcomes in the order (q_new, h, c), in three short stages: q_new from its
    # marginals, then h from the 6 under it and c from the 6 under (q_new, h), each with the rescaled
    # remainder of u — the same outcome as one cumulative sum over all of them, at a fraction of the cost
    if w_max is None:  # P(q_new, h, c) = P(q_new, h) P(c | q_new): the joint is never formed
        # renormalise: new flavours without a closing hadron are out
        ph = jnp.where(jnp.sum(wc, axis=-1, keepdims=True) > 0, ph, 0.0)
        ph = safe_div(ph, jnp.sum(ph))
        blk_h = jax.lax.stop_gradient(ph)  # [n_new, 6]
        row_c = lambda iq, ih: jax.lax.stop_gradient(pc[iq]) * blk_h[iq, ih]  # noqa: E731
        prob = lambda iq, ih, ic: ph[iq, ih] * pc[iq, ic]  # noqa: E731
    else:
        joint = ph[:, :, None] * pc[:, None, :]  # [n_new, 6, 6]
        fits = mh[:, :, None] + mc[:, None, :] + margin <= w_max
        # renormalise: outcomes without a closing hadron, and those that do not fit, are out
        joint = jnp.where(fits, joint, 0.0)
        joint = safe_div(joint, jnp.sum(joint))
        sg = jax.lax.stop_gradient(joint)
        blk_h = jnp.sum(sg, axis=-1)
        row_c = lambda iq, ih: sg[iq, ih]  # noqa: E731
        prob = lambda iq, ih, ic: joint[iq, ih, ic]  # noqa: E731
    blk_q = jnp.sum(blk_h, axis=-1)  # [n_new]
    cdf_q = jnp.cumsum(blk_q)
    target = u * cdf_q[-1]
    iq = jnp.clip(jnp.sum(cdf_q <= target), 0, n_new - 1)
    rest = target - (cdf_q[iq] - blk_q[iq])
    cdf_h = jnp.cumsum(blk_h[iq])
    ih = jnp.clip(jnp.sum(cdf_h <= rest), 0, N_SPECIES - 1)
    rest = rest - (cdf_h[ih] - blk_h[iq, ih])
    # never land on a zero-probability outcome (u at a CDF plateau or rounding at a block edge)
    first = jnp.argmax(blk_h.reshape(-1) > 0)
    bad = ~(blk_h[iq, ih] > 0)
    iq, ih = jnp.where(bad, first // N_SPECIES, iq), jnp.where(bad, first % N_SPECIES, ih)
    c_row = row_c(iq, ih)
    cdf_c = jnp.cumsum(c_row)
    ic = jnp.clip(jnp.sum(cdf_c <= rest), 0, N_SPECIES - 1)
    ic = jnp.where(c_row[ic] > 0, ic, jnp.argmax(c_row > 0))
    pid_h = jnp.asarray(_PID)[qh[iq], qbh[iq], ih]
    pid_c = jnp.asarray(_PID)[qc[iq], qbc[iq], ic]
    return Bundle(q_new=qn[iq], pid_h=pid_h, mass_h=mh[iq, ih], pid_c=pid_c, mass_c=mc[iq, ic],
                  log_prob=safe_log(prob(iq, ih, ic), floor=0.0))


def _min_two():
    """Lightest two-hadron state (GeV) reachable from ends (a, b̄) with one break, f[29, 29] (inf if none).

    Closing pairs of two diquark codes are impossible (Pythia's finalTwo), so popcorn mesons do not count.
    """
    ok = (_FIXED + _B_OCT + _B_DEC > 0) & ~_TWO_DIQUARKS[..., None]
    lightest = np.where(ok, _MASS, np.inf).min(axis=-1)  # [29, 29]
    out = np.full((N_FLAV, N_FLAV), np.inf)
    for a in range(N_FLAV):
        for b in range(N_FLAV):
            for qn in NEW_CODES:
                out[a, b] = min(out[a, b], lightest[a, qn - 1] + lightest[qn - 1, b])
    return out


def _lightest():
    pid = np.zeros((N_FLAV, N_FLAV), np.int32)
    m = np.zeros((N_FLAV, N_FLAV))
    for a in range(N_FLAV):
        for b in range(N_FLAV):
            ok = ((_FIXED[a, b] + _B_OCT[a, b] + _B_DEC[a, b]) > 0) & ~_TWO_DIQUARKS[a, b]
            if not ok.any():  # c b̄ / b c̄ (no B_c in the table), two diquarks: collapse fails (pid 0)
                continue
            k = np.argmin(np.where(ok, _MASS[a, b], np.inf))
            pid[a, b], m[a, b] = _PID[a, b, k], _MASS[a, b, k]
    return pid, m


_MIN_TWO = _min_two()
_LIGHTEST_PID, _LIGHTEST_MASS = _lightest()


def min_two_meson_mass(f_pos, f_neg):
    """Mass (GeV) of the lightest two-hadron state a string with end codes (a, b̄) can make (two mesons for
    quark ends; the name is historical)."""
    return jnp.asarray(_MIN_TWO)[f_pos - 1, f_neg - 1]


def lightest_meson(f_pos, f_neg):
    """(pid, mass) of the lightest hadron with end codes (a, b̄) (a meson for quark ends; used to collapse
    light strings)."""
    return jnp.asarray(_LIGHTEST_PID)[f_pos - 1, f_neg - 1], jnp.asarray(_LIGHTEST_MASS)[f_pos - 1, f_neg - 1]


def quark_content(pid):
    """Net quark content of hadrons, i32[..., 5]: (#q − #q̄) for d, u, s, c, b (0 for non-hadrons).

    Mesons: for flavour-diagonal mesons zero; for ``±(100 i + 10 j + k)`` with i ≠ j it is ±1 for the
    quark and ∓1 for the antiquark as implied by the PDG sign convention. Baryons ``±(1000 i + 100 j +
    10 k + 2J+1)``: +1 (−1 for antibaryons) for each of i, j, k.
    """
    pid = jnp.asarray(pid)
    a = jnp.abs(pid)
    is_meson = (a > 100) & (a < 1000)
    hi = (a // 100) % 10
    lo = (a // 10) % 10
    # particle (pid > 0): the heavier flavour is a quark if up-type, an antiquark if down-type
    hi_is_quark = (hi % 2 == 0) == (pid > 0)
    sign_hi = jnp.where(hi_is_quark, 1, -1)
    flav = jnp.arange(1, N_QUARK + 1)
    content = (sign_hi[..., None] * (hi[..., None] == flav) - sign_hi[..., None] * (lo[..., None] == flav))
    meson = jnp.where((is_meson & (hi != lo))[..., None], content, 0)
    is_baryon = (a > 1000) & (a < 10000) & (lo > 0)
    q1 = (a // 1000) % 10
    n_b = (q1[..., None] == flav).astype(jnp.int32) + (hi[..., None] == flav) + (lo[..., None] == flav)
    baryon = jnp.where(is_baryon[..., None], jnp.where(pid > 0, 1, -1)[..., None] * n_b, 0)
    return (meson + baryon).astype(jnp.int32)


def is_strange_hadron(pid):
    """True for hadrons containing an s or s̄ valence quark (K, K*, φ, D_s, B_s, Λ, Σ, Ξ, Ω, …; η/η′ not counted)."""
    a = jnp.abs(jnp.asarray(pid))
    hi = (a // 100) % 10
    lo = (a // 10) % 10
    meson = (a > 100) & (a < 1000) & ((hi == 3) | (lo == 3)) & ~((a == 331) | (a == 221))
    baryon = (a > 1000) & (a < 10000) & (lo > 0) & (((a // 1000) % 10 == 3) | (hi == 3) | (lo == 3))
    return meson | baryon
