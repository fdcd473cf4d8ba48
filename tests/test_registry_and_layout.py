"""The one observable registry, and the shape of diffgen.fit: an import DAG without private imports."""

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen
from diffgen import observables
from diffgen.fit import lep, targets

ROOT = Path(__file__).resolve().parents[1]


def test_registry_is_the_one_table():
    reg = observables.REGISTRY
    assert set(observables.OBSERVABLES) | {"cos_theta"} == set(reg)
    assert all(observables.OBSERVABLES[n] is reg[n].fn for n in observables.OBSERVABLES)
    assert targets.observable_registry() == {n: s.fn for n, s in reg.items()}
    assert targets.BUILTIN_OBSERVABLES == {"cos_theta": reg["cos_theta"].fn}
    assert targets.cos_theta is reg["cos_theta"].fn
    fns = {name: fn for name, fn, _ in lep.LEP_OBSERVABLES}
    assert fns["n_charged"] is reg["charged_multiplicity"].fn and fns["b_wide"] is reg["b_wide"].fn
    for spec in reg.values():
        e = spec.edges(10)
        assert np.all(np.diff(e) > 0) and e[0] == spec.range[0] and e[-1] <= spec.range[1]
    np.testing.assert_allclose(reg["thrust"].edges(5), np.linspace(0.5, 1.0, 6))
    np.testing.assert_allclose(reg["charged_multiplicity"].edges(), np.arange(-0.5, 60.5, 2.0))
    with pytest.raises(ValueError, match="bins must be an integer >= 1"):
        reg["thrust"].edges(0)


def test_unknown_observable_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown observable 'thrus'\. Did you mean 'thrust'.*Known observables: "
                                         r"aplanarity, b_total"):
        observables.observable_spec("thrus")
    assert "cos_theta" in observables.unknown_observable_message("x")


def test_fermion_cos_theta_is_the_angle_to_the_electron_beam():
    gen = diffgen.presets.ee_mumu(91.188)
    ev = gen.sample(gen.default_params(), jax.random.key(0), 500)
    p, axis = np.asarray(ev.p4, float)[:, 0, 1:], np.asarray(ev.p4_in, float)[:, 0, 1:]
    expected = np.sum(p * axis, -1) / np.sqrt(np.sum(p * p, -1) * np.sum(axis * axis, -1))
    np.testing.assert_allclose(np.asarray(targets.cos_theta(ev)), expected, atol=1e-6)
    flipped = ev.replace(p4_in=-ev.p4_in)  # e- along -z: the angle flips
    np.testing.assert_allclose(np.asarray(targets.cos_theta(flipped)), -expected, atol=1e-6)
    g = jax.grad(lambda p4: jnp.sum(targets.cos_theta(ev.replace(p4=p4))))(jnp.zeros_like(ev.p4))
    assert np.all(np.isfinite(np.asarray(g)))  # zero momentum: finite gradient


def _imports(path: Path):
    """(module imported, names) of every `from diffgen... import ...` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffgen"):
            yield node.module, [a.name for a in node.names]


def test_fit_imports_form_a_dag_without_private_names():
    fit_dir = ROOT / "diffgen" / "fit"
    graph = {}
    for path in sorted(fit_dir.glob("*.py")):
        mod = f"diffgen.fit.{path.stem}"
        deps = set()
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{mod} imports private {private} from {module}"
            if module == "diffgen.fit":
                deps |= {f"diffgen.fit.{n}" for n in names}
            elif module.startswith("diffgen.fit."):
                deps.add(module)
        assert "diffgen.cli" not in {m for m, _ in _imports(path)}, mod
        if path.stem != "__init__":
            graph[mod] = deps - {"diffgen.fit.__init__"}
    done = set()

    def visit(m, stack):
        assert m not in stack, f"import cycle: {' -> '.join(stack + [m])}"
        if m in done:
            return
        for d in graph.get(m, ()):
            visit(d, stack + [m])
        done.add(m)

    for m in graph:
        visit(m, [])
    assert "diffgen.fit.targets" not in graph["diffgen.fit.binning"]
    assert "diffgen.fit.losses" not in graph["diffgen.fit.targets"]
    for path in (ROOT / "diffgen" / "cli.py", ROOT / "diffgen" / "observables" / "__init__.py",
                 ROOT / "diffgen" / "io" / "yoda.py"):
        for module, names in _imports(path):
            assert not [n for n in names if n.startswith("_")], (path.name, module, names)
