"""A Flax network outputs θ and the generator is a layer: gradients reach the weights, the loss falls."""

import importlib.util
import pathlib

import jax
import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "flax_layer.py"


def _load():
    spec = importlib.util.spec_from_file_location("flax_layer", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_as_a_flax_layer_trains():
    mod = _load()
    history, (m_z, s2w), grads = mod.train(steps=25)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert any(float(np.abs(np.asarray(g)).max()) > 0 for g in leaves)  # gradient reached the weights
    assert history[-1] < 0.2 * history[0], history
    # and moved θ towards the truth used for the pseudo-measurement
    assert abs(float(m_z) - 91.25) < abs(91.0 - 91.25)
