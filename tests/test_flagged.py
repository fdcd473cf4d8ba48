"""No silent bias from flagged events (issue 18, item 7)."""

import warnings

import jax
import numpy as np
import pytest

import diffgen
from diffgen.events import Status
from diffgen.flagged import FlaggedEventsError, FlaggedEventsWarning, FlagMonitor, check_flagged
from diffgen.processes import ee_to_ffbar
from diffgen.stage import Generator, Stage, chain


def _flagging(share: float) -> Stage:
    """A stage that flags a random ``share`` of the events FAILED_KINEMATICS (as a failing stage would)."""
    def apply(params, keys, events):
        u = jax.vmap(jax.random.uniform)(keys)
        return events.with_status(u < share, Status.FAILED_KINEMATICS)

    return Stage(lambda key: {}, apply)


@pytest.fixture(scope="module")
def flaky():
    """ee-mumu with 30 % of its events flagged."""
    return Generator(chain(("hard", ee_to_ffbar((13,), 91.188)), ("flaky", _flagging(0.3))), name="flaky")


def cos(ev):
    return diffgen.kinematics.cos_theta(ev.p4[:, 0], ev.p4_in[:, 0])


def test_expect_and_cross_section_warn_naming_the_flag(flaky):
    p = flaky.default_params()
    key = jax.random.key(0)
    with pytest.warns(FlaggedEventsWarning, match=r"expect: \d+ of 2000 events \(3\d\.\d%\).*FAILED_KINEMATICS"):
        diffgen.expect(cos, flaky, p, key, 2000)
    with pytest.warns(FlaggedEventsWarning, match="cross_section.*FAILED_KINEMATICS"):
        diffgen.cross_section(flaky, p, key, 2000)
    with pytest.raises(FlaggedEventsError, match="FAILED_KINEMATICS"):
        diffgen.cross_section(flaky, p, key, 2000, on_flagged="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diffgen.cross_section(flaky, p, key, 2000, on_flagged="ignore")
        diffgen.cross_section(flaky, p, key, 2000, max_flagged=0.5)  # 30 % is under this threshold
        gen = diffgen.presets.ee_mumu()
        diffgen.expect(cos, gen, gen.default_params(), key, 2000)  # nothing flagged: silent


def test_threshold_flags_name_below_threshold():
    gen = diffgen.presets.ee_mumu()
    p = diffgen.with_settings(gen.default_params(), {"Beams:eCM": 0.1})  # below 2 m_mu: every event flagged
    with pytest.raises(FlaggedEventsError, match=r"2000 of 2000 events \(100.0%\).*BELOW_THRESHOLD 2000"):
        diffgen.cross_section(gen, p, jax.random.key(0), 2000, on_flagged="raise")


def test_warns_under_grad_and_linearize(flaky):
    p = flaky.default_params()
    key = jax.random.key(1)

    def sigma(params):
        return diffgen.cross_section(flaky, params, key, 500)[0]

    with pytest.warns(FlaggedEventsWarning, match="FAILED_KINEMATICS"):
        g = jax.grad(sigma)(p)
    assert np.isfinite(float(g["hard"]["23:m0"]))
    with pytest.warns(FlaggedEventsWarning, match="FAILED_KINEMATICS"):
        diffgen.linearize(sigma, p)


def test_bad_options_are_refused_before_running(flaky):
    for kw, match in (({"max_flagged": 1.5}, "max_flagged"), ({"max_flagged": True}, "max_flagged"),
                      ({"on_flagged": "shout"}, "on_flagged")):
        with pytest.raises(ValueError, match=match):
            diffgen.cross_section(flaky, flaky.default_params(), jax.random.key(0), 10, **kw)
    with pytest.raises(ValueError, match="on_flagged"):
        check_flagged(diffgen.Events.empty(2, 1), on_flagged="loud")


def test_fit_warns_once_for_its_worst_evaluation(flaky):
    from diffgen.fit import fit, targets

    data = targets.from_arrays("cos", np.full(4, 0.25), np.full(4, 0.02), np.linspace(-1, 1, 5))
    obs = [("cos", cos, np.linspace(-1, 1, 5))]
    kw = dict(steps=2, n_events=1000, key=jax.random.key(2), progress=False, newton_steps=0,
              covariance_events=1000)
    with pytest.warns(FlaggedEventsWarning, match=r"^fit: .*FAILED_KINEMATICS") as record:
        fit(flaky, flaky.default_params(), [data], obs, ["23:m0"], **kw)
    assert sum(issubclass(w.category, FlaggedEventsWarning) for w in record) == 1
    # on_flagged="raise" goes through the same monitor (FlagMonitor.check, tested below)


def test_fit_linearized_warns_once(flaky):
    from diffgen.fit import targets
    from diffgen.fit.linear import fit_linearized

    data = targets.from_arrays("cos", np.full(4, 0.25), np.full(4, 0.02), np.linspace(-1, 1, 5))
    obs = [("cos", cos, np.linspace(-1, 1, 5))]
    kw = dict(n_events=1000, key=jax.random.key(2), progress=False, iterations=1,
              bounds={"23:m0": (90.0, 92.5)})
    with pytest.warns(FlaggedEventsWarning, match=r"^fit_linearized: .*FAILED_KINEMATICS") as record:
        fit_linearized(flaky, flaky.default_params(), [data], obs, ["23:m0"], **kw)
    assert sum(issubclass(w.category, FlaggedEventsWarning) for w in record) == 1
    with pytest.raises(ValueError, match="on_flagged"):
        fit_linearized(flaky, flaky.default_params(), [data], obs, ["23:m0"], on_flagged="loud", **kw)


def test_flag_monitor_keeps_the_worst():
    m = FlagMonitor()
    m.watch(diffgen.Events.empty(4, 1))
    m.record(np.uint32([1, 0, 0, 0]))
    m.record(np.uint32([0, 0, 0, 0]))
    assert m.worst_share == 0.25
    with pytest.raises(FlaggedEventsError, match="CAPACITY_OVERFLOW 1"):
        m.check(0.1, "raise")
    m.check(0.3, "raise")  # under the threshold


def test_linearized_histograms_warns_for_its_nominal_sample(flaky):
    from diffgen.fit.variations import linearized_histograms

    obs = [("cos", cos, np.linspace(-1, 1, 5))]
    args = (flaky, flaky.default_params(), obs, ["23:m0"], jax.random.key(3), 1000)
    with pytest.warns(FlaggedEventsWarning, match=r"^linearized_histograms: \d+ of 1000 events.*FAILED_KINEMATICS"):
        lin = linearized_histograms(*args)
    assert np.all(np.isfinite(lin.jacobian["cos"]))
    with pytest.raises(FlaggedEventsError, match="FAILED_KINEMATICS"):
        linearized_histograms(*args, batches=1, on_flagged="raise")
    with pytest.raises(ValueError, match="on_flagged"):
        linearized_histograms(*args, on_flagged="loud")


def test_distributed_expect_and_grad_counts_the_whole_run(flaky):
    from diffgen import distributed

    p, key = flaky.default_params(), jax.random.key(4)
    # 1000 events in chunks of 300: the padding of the last chunk is not counted
    bad = int(np.count_nonzero(np.asarray(flaky.sample(p, key, 1000).status)))
    with pytest.warns(FlaggedEventsWarning, match=rf"^expect_and_grad: {bad} of 1000 events.*FAILED_KINEMATICS {bad}"):
        mean, grad = distributed.expect_and_grad(cos, flaky, p, key, 1000, chunk=300)
    assert np.isfinite(float(mean))
    with pytest.raises(FlaggedEventsError, match=rf"{bad} of 1000 events"):
        distributed.expect_and_grad(cos, flaky, p, key, 1000, chunk=300, with_error=True, on_flagged="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distributed.expect_and_grad(cos, flaky, p, key, 1000, chunk=300, max_flagged=0.5)


def test_distributed_value_and_grad_warns(flaky):
    from diffgen import distributed

    with pytest.warns(FlaggedEventsWarning, match=r"^value_and_grad: \d+ of 1000 events.*FAILED_KINEMATICS"):
        distributed.value_and_grad(lambda m: m ** 2, cos, flaky, flaky.default_params(), jax.random.key(4), 1000,
                                   chunk=300)


def test_flag_counts_add_over_blocks():
    from diffgen.flagged import check_flag_counts, flag_counts

    status = np.uint32([0, 2, 3, 0, 16, 1])
    c = np.asarray(flag_counts(status[:3])) + np.asarray(flag_counts(status[3:], np.array([1, 1, 0], bool)))
    assert c.tolist() == [3, 1, 2, 0, 0, 1]  # flagged, then CAPACITY_OVERFLOW, FAILED_KINEMATICS, ..., BELOW_THRESHOLD
    msg = r"^x: 3 of 5 events \(60.0%\).*CAPACITY_OVERFLOW 1, FAILED_KINEMATICS 2"
    with pytest.raises(FlaggedEventsError, match=msg):
        check_flag_counts(c, 5, 0.5, "raise", where="x")
    check_flag_counts(c, 5, 0.6, "raise")
