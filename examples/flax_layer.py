"""The generator as a layer of a Flax model.

A small network maps a context vector (here: the measured σ and A_FB at two energies) to
electroweak parameters θ = (m_Z, sin²θ̄_W); the generator, a differentiable layer, turns θ into
events; the loss compares generated observables with the measurement. ``jax.grad`` reaches the
network weights *through* the event generation, and optax updates them.

Run: ``python examples/flax_layer.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import diffgen
from diffgen.expect import cross_section_of

ENERGIES = (89.0, 93.0)
N_EVENTS = 20_000


class ThetaNet(nn.Module):
    """Context → (m_Z, sin²θ̄_W), kept in a physical window by a tanh transform."""

    @nn.compact
    def __call__(self, context):
        h = nn.tanh(nn.Dense(16)(context))
        raw = nn.Dense(2, kernel_init=nn.initializers.zeros)(h)
        m_z = 91.0 + 1.0 * jnp.tanh(raw[0])        # 90 … 92 GeV
        s2w = 0.2315 + 0.01 * jnp.tanh(raw[1])     # 0.2215 … 0.2415
        return m_z, s2w


def observables(gens, base_params, m_z, s2w, key):
    """σ and A_FB at each energy from generated events (differentiable in m_Z, sin²θ̄_W)."""
    out = []
    for gen, p in zip(gens, base_params):
        p = diffgen.with_settings(p, {"23:m0": m_z, "StandardModel:sin2thetaWbar": s2w})
        ev = gen.sample_traced(p, key, N_EVENTS)
        sigma, _ = cross_section_of(ev)
        afb, _ = diffgen.forward_backward_asymmetry(ev)
        out += [sigma, afb]
    return jnp.stack(out)


def make_problem(truth=(91.25, 0.2330)):
    gens = [diffgen.presets.ee_mumu(e) for e in ENERGIES]
    base = [g.default_params() for g in gens]
    target = observables(gens, base, truth[0], truth[1], jax.random.key(123))
    scale = jnp.abs(target) + jnp.array([0.0, 0.01] * len(ENERGIES))

    def loss_fn(weights, model, context, key):
        m_z, s2w = model.apply(weights, context)
        sim = observables(gens, base, m_z, s2w, key)
        return jnp.sum(((sim - target) / scale) ** 2)

    return target, loss_fn


def train(steps: int = 30, learning_rate: float = 0.05, seed: int = 0):
    """Train the network through the generator; returns the loss history and the fitted θ."""
    target, loss_fn = make_problem()
    model = ThetaNet()
    context = target / jnp.abs(target).max()
    weights = model.init(jax.random.key(seed), context)
    opt = optax.adam(learning_rate)
    state = opt.init(weights)
    key = jax.random.key(7)  # common random numbers across steps: smooth, deterministic descent

    @jax.jit
    def step(weights, state):
        loss, grads = jax.value_and_grad(loss_fn)(weights, model, context, key)
        updates, state = opt.update(grads, state, weights)
        return optax.apply_updates(weights, updates), state, loss, grads

    history = []
    for _ in range(steps):
        weights, state, loss, grads = step(weights, state)
        history.append(float(loss))
    return history, model.apply(weights, context), grads


if __name__ == "__main__":
    hist, (m_z, s2w), _ = train()
    print(f"loss {hist[0]:.4g} -> {hist[-1]:.4g};  m_Z = {float(m_z):.4f} GeV, sin2thetaWbar = {float(s2w):.5f}")
    print("truth: m_Z = 91.25 GeV, sin2thetaWbar = 0.2330")
