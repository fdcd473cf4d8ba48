"""Plots a physicist compares (diffgen.plotting, ``diffgen generate --plot/--compare/--absolute``)."""

import math
import re

import jax
import numpy as np
import pytest

import diffgen
from diffgen import plotting
from diffgen.amplitudes import ee_ffbar
from diffgen.cli import _histogram_specs, main
from diffgen.io.yoda import histo1d_text, read_histogram, read_histograms

# A χ² of ndf independent bins exceeds ndf + 5 sqrt(2 ndf) with probability < 1e-4 for ndf >= 10
# (Wilson-Hilferty), so a correct comparison fails these tests about once in 10^4 runs.


def _chi2_bound(ndf):
    return ndf + 5.0 * math.sqrt(2.0 * ndf)


def test_normalised_density_integrates_to_one_and_has_the_binomial_error():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.1, 5000)
    edges = np.array([-1.0, 0.0, 0.1, 0.25, 0.3, 0.5, 2.0])  # uneven widths, everything inside
    h = plotting.Hist1D.fill("c_parameter", x, np.ones_like(x), edges)
    y, err = plotting.density(h)
    assert np.sum(y * np.diff(edges)) == pytest.approx(1.0, rel=1e-12)
    f = h.sumw / h.sumw.sum()  # unit weights: the delta-method error is the binomial one
    np.testing.assert_allclose(err, np.sqrt(f * (1 - f) / x.size) / np.diff(edges), rtol=1e-12)
    # entries outside the range still count in sigma: the integral is the fraction inside
    inner = plotting.Hist1D.fill("c_parameter", x, np.ones_like(x), edges[1:-1])
    y_in, _ = plotting.density(inner)
    frac = np.mean((x >= edges[1]) & (x < edges[-2]))
    assert np.sum(y_in * np.diff(edges[1:-1])) == pytest.approx(frac, rel=1e-12)
    # absolute: dsigma/dX in pb for weights in pb, sigma = sum(w)/N
    w = rng.uniform(0.5, 1.5, x.size)
    hw = plotting.Hist1D.fill("c_parameter", x, w, edges)
    ya, ea = plotting.density(hw, absolute=True)
    assert np.sum(ya * np.diff(edges)) == pytest.approx(w.sum() / x.size, rel=1e-12)
    np.testing.assert_allclose(ea * np.diff(edges) * x.size, np.sqrt(hw.sumw2))


def test_normalised_error_matches_the_scatter_of_replicas():
    """The delta-method error of 1/σ dσ/dX for weighted events against 400 independent replicas."""
    rng = np.random.default_rng(2)
    edges = np.linspace(0, 1, 6)
    ys, errs = [], []
    for _ in range(400):
        x = rng.uniform(0, 1.2, 500)  # a sixth falls outside the plotted range
        w = rng.exponential(1.0, 500) * (1 + x)
        y, e = plotting.density(plotting.Hist1D.fill("thrust", x, w, edges))
        ys.append(y)
        errs.append(e)
    sd = np.std(ys, axis=0, ddof=1)
    # the sd of 400 replicas has a relative error of about 1/sqrt(2 * 399) = 3.5 %: allow 4 of those
    np.testing.assert_allclose(np.mean(errs, axis=0), sd, rtol=0.14)


def test_count_bins_are_integer_aligned():
    for lo, hi, width in [(0, 10, 1), (-0.5, 60.5, 2), (3, 7, 3), (0, 0, 1)]:
        e = plotting.count_edges(lo, hi, width)
        assert np.all(np.diff(e) == width) and np.allclose(e % 1, 0.5)
        ints = np.arange(math.ceil(lo), math.floor(hi) + 1)
        counts = np.histogram(ints, e)[0]
        assert counts.sum() == ints.size  # every integer in [lo, hi] is inside, none on an edge
    specs = {s.name: s for s in _histogram_specs("ee-hadrons", 20)}
    nch = specs["charged_multiplicity"].edges
    assert np.all(np.diff(nch) == 2) and np.allclose(nch % 1, 0.5) and nch[0] == -0.5
    # --bins does not change the count binning, only the continuous one
    assert np.array_equal(_histogram_specs("ee-hadrons", 7)[3].edges, nch)
    assert _histogram_specs("ee-hadrons", 7)[1].edges.size == 8
    with pytest.raises(ValueError, match="positive whole number"):
        plotting.count_edges(0, 4, 1.5)


def test_physics_labels_log_scales_and_thrust_as_one_minus_t():
    rng = np.random.default_rng(3)
    t = 1 - rng.exponential(0.05, 2000)
    specs = {s.name: s for s in _histogram_specs("ee-hadrons", 10)}
    assert specs["thrust"].label == "1-T" and specs["thrust"].edges[0] == 0.0 and specs["thrust"].edges[-1] == 0.5
    hists = [plotting.Hist1D.fill("thrust", 1 - t, np.ones_like(t), specs["thrust"].edges),
             plotting.Hist1D.fill("c_parameter", rng.uniform(0, 1, 2000), np.ones(2000), specs["c_parameter"].edges),
             plotting.Hist1D.fill("charged_multiplicity", 2 * rng.poisson(10, 2000), np.ones(2000),
                                  specs["charged_multiplicity"].edges)]
    fig, drawn = plotting.figure(hists)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_xlabel() for a in axes] == ["$1-T$", "$C$", r"$N_\mathrm{ch}$"]
    assert [a.get_yscale() for a in axes] == ["log", "log", "linear"]
    assert axes[0].get_ylabel() == r"$1/\sigma\;\mathrm{d}\sigma/\mathrm{d}(1-T)$"
    for ax, p in zip(axes, drawn):  # the points drawn are the normalised densities
        line = ax.lines[0]
        np.testing.assert_allclose(line.get_ydata(), p.y)
        assert np.sum(p.y * np.diff(p.edges)) == pytest.approx(1.0, rel=1e-12)
    fig_abs, _ = plotting.figure(hists[:1], absolute=True)
    assert fig_abs.axes[0].get_ylabel().endswith("[pb]")


# JADE/OPAL's 1/σ dσ/dy23 at 91.2 GeV (Rivet JADE_OPAL_2000_S4300807, d26-x01-y01): 8 bins a decade
_OPAL_Y23_EDGES = 10.0 ** (-4.5 + np.arange(33) / 8)


def test_y23_has_log_spaced_default_bins_and_one_minus_t_stays_linear():
    assert plotting.style("y23").logx and plotting.style("y23").logy
    assert not plotting.style("thrust").logx and not plotting.style("c_parameter").logx
    e = plotting.default_edges("y23", 32, (0.0, 0.5))
    np.testing.assert_allclose(e, _OPAL_Y23_EDGES, rtol=1e-12)  # OPAL's edges with 32 bins
    assert e[0] == 10 ** -4.5 and e[-1] == 10 ** -0.5
    specs = {s.name: s for s in _histogram_specs("ee-hadrons", 20, names=("y23", "thrust"))}
    y23 = specs["y23"].edges
    assert y23.size == 21 and np.allclose(np.diff(np.log(y23)), np.log(10 ** 4) / 20)  # 5 bins a decade
    np.testing.assert_allclose(np.diff(specs["thrust"].edges), 0.025)  # 1 − T: 20 equal bins in [0, 0.5]
    np.testing.assert_allclose(plotting.log_edges(1e-4, 1e-1, 3), [1e-4, 1e-3, 1e-2, 1e-1], rtol=1e-12)
    for lo, hi, bins in [(0.0, 1.0, 4), (-1.0, 1.0, 4), (1.0, 0.1, 4), (1e-3, 1.0, 0), (1e-3, 1.0, 2.0)]:
        with pytest.raises(ValueError, match="log"):
            plotting.log_edges(lo, hi, bins)


def test_log_binned_normalised_density_integrates_to_one_and_y23_zero_is_below_the_first_bin():
    rng = np.random.default_rng(4)
    y = 10 ** np.clip(rng.normal(-2.5, 0.8, 20000), -6.9, -0.01)
    edges = plotting.log_edges(1e-7, 1.0, 28)  # everything inside: Σ content × width = 1
    widths = np.diff(edges)
    assert widths[-1] / widths[0] > 1e5  # very uneven widths
    h = plotting.Hist1D.fill("y23", y, np.ones_like(y), edges)
    d, err = plotting.density(h)
    assert np.sum(d * widths) == pytest.approx(1.0, rel=1e-12)
    f = h.sumw / y.size
    np.testing.assert_allclose(err, np.sqrt(f * (1 - f) / y.size) / widths, rtol=1e-12)
    # two-jet events (y23 = 0, fewer than three particles) and flagged ones (weight 0): no bin, no log(0);
    # the zeros count in σ, so the integral is the share of σ above zero, as in ALEPH's analysis
    w = rng.uniform(0.5, 1.5, y.size)
    values = np.concatenate([y, np.zeros(5000), np.full(100, 0.3)])
    weights = np.concatenate([w, np.full(5000, 2.0), np.zeros(100)])
    with np.errstate(all="raise"):
        h0 = plotting.Hist1D.fill("y23", values, weights, edges)
        d0, err0 = plotting.density(h0)
    assert np.all(np.isfinite(d0)) and np.all(np.isfinite(err0))
    assert np.sum(d0 * widths) == pytest.approx(w.sum() / (w.sum() + 1e4), rel=1e-12)
    line = plotting.compact_summary(h0)
    assert "28 log-spaced bins in [1e-07, 1]" in line and f"{100 * w.sum() / (w.sum() + 1e4):.1f}% of sigma" in line


def test_y23_figure_has_a_log_x_axis_and_ratio_panel():
    rng = np.random.default_rng(5)
    edges = plotting.default_edges("y23", 16, (0.0, 0.5))
    run = plotting.Hist1D.fill("y23", np.append(10 ** rng.normal(-2.5, 0.7, 4000), np.zeros(50)), np.ones(4050),
                               edges)
    ref = plotting.Hist1D.fill("y23", 10 ** rng.normal(-2.5, 0.7, 4000), np.ones(4000), edges, label="ref")
    fig, drawn = plotting.figure([run], {"y23": (ref, "events")})
    ax, rax = fig.axes
    assert ax.get_xscale() == "log" and rax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((edges[0], edges[-1]))
    assert rax.get_xlabel() == r"$y_{23}^\mathrm{D}$"
    points = ax.lines[0]  # diffgen's markers at the geometric bin centres
    np.testing.assert_allclose(points.get_xdata(), np.sqrt(edges[1:] * edges[:-1]))
    np.testing.assert_allclose(points.get_ydata(), drawn[0].y)
    r, _, _ = drawn[0].ratio()
    np.testing.assert_allclose(rax.lines[-1].get_ydata(), r)
    # a reference binned from 0 (a YODA histogram) cannot go on a log axis: linear, and still drawn
    zero_edges = np.append(0.0, edges[1:])
    lin = plotting.Hist1D.fill("y23", np.zeros(10), np.ones(10), zero_edges)
    fig_lin, _ = plotting.figure([lin])
    assert fig_lin.axes[0].get_xscale() == "linear"
    # only two-jet events (y23 = 0): nothing in range, the figure is still drawn on a log x axis
    empty = plotting.Hist1D.fill("y23", np.zeros(10), np.ones(10), edges)
    fig_empty, drawn_empty = plotting.figure([empty])
    assert fig_empty.axes[0].get_xscale() == "log" and not np.any(drawn_empty[0].y)
    import matplotlib.pyplot as plt

    for f in (fig, fig_lin, fig_empty):
        plt.close(f)


def test_text_histogram_prints_log_spaced_edges_apart():
    from diffgen.cli import text_histogram

    edges = plotting.log_edges(10 ** -4.5, 10 ** -0.5, 4)
    lines = text_histogram([1.0, 2.0, 3.0, 4.0], [0.1] * 4, edges, width=8).splitlines()
    assert lines[0].startswith("[+3.16e-05,+3.16e-04)") and lines[-1].startswith("[+3.16e-02,+3.16e-01)")
    assert text_histogram([1.0], [0.1], [0.0, 0.5]).startswith("[ +0.000, +0.500)")  # linear: as before


def test_observables_option_plots_y23_of_two_jet_events_below_the_first_bin(tmp_path, capsys):
    """ee-mumu events have two particles: y23 = 0 for all, which lies outside the log bins, never logged."""
    png = tmp_path / "y23.png"
    args = ["generate", "--events", "2000", "--quiet", "--bins", "8", "--observables", "y23, cos_theta"]
    assert main(args + ["--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "y23: <y23> = 0, 8 log-spaced bins in [3.162e-05, 0.3162], 0.0% of sigma in range" in out
    assert "A_FB" in out and "cos(theta): <cos(theta)>" in out and png.read_bytes()[:4] == b"\x89PNG"
    assert main(args + ["--histograms"]) == 0
    full = capsys.readouterr().out
    assert "[+3.16e-05,+1.00e-04)" in full and "(100.0% of sigma)" in full and "outside [3.162e-05, 0.3162)" in full
    assert main(["generate", "--events", "1000", "--quiet", "--observables", "thrust"]) == 0
    assert "A_FB" not in capsys.readouterr().out  # A_FB is summed with the cos θ histogram only
    for bad, message in [("y32", "Did you mean 'y23'"), ("y23,y23", "twice"), ("y23,", "separated by commas")]:
        rc = main(["generate", "--events", "1000", "--quiet", "--observables", bad, "--plot", str(tmp_path / "x.png")])
        err = capsys.readouterr().err
        assert rc == 2 and "--observables" in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y23.png"]


def test_compare_with_a_log_binned_yoda_y23_uses_its_bins(tmp_path, capsys):
    ref = tmp_path / "ref.yoda"
    ref.write_text(histo1d_text(np.ones(32), np.full(32, 0.1), _OPAL_Y23_EDGES, "/REF/y23"))
    png = tmp_path / "y.png"
    assert main(["generate", "--events", "1000", "--quiet", "--observables", "y23", "--compare", str(ref),
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "32 log-spaced bins in [3.162e-05, 0.3162]" in out and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_compare_y23_of_showered_partons_with_an_npz_on_log_bins(tmp_path, capsys):
    """Two independent parton-level samples (shower on, hadronization off): the log-binned y23 agree."""
    common = ["generate", "--process", "ee-hadrons", "--set", "HadronLevel:all = off", "--events", "2000",
              "--chunk", "1000", "--quiet", "--observables", "y23"]
    ref = tmp_path / "ref.npz"
    assert main(common + ["--seed", "1", "--out", str(ref)]) == 0
    capsys.readouterr()
    assert main(common + ["--seed", "2", "--compare", str(ref), "--plot", str(tmp_path / "y.png")]) == 0
    out = capsys.readouterr().out
    chi2, ndf = _number(r"compare y23 with ref.npz: chi2/ndf = ([0-9.]+)/(\d+)", out)
    assert ndf >= 15 and chi2 < _chi2_bound(ndf), out


def test_yoda_reference_named_thrust_is_mapped_to_one_minus_t():
    edges_t = np.linspace(0.5, 1.0, 6)
    c = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    h = read_histogram(histo1d_text(c, np.sqrt(c), edges_t, "/REF/thrust"))
    r = plotting.yoda_reference("thrust", h, "ref")
    np.testing.assert_allclose(r.edges, 1 - edges_t[::-1])
    np.testing.assert_allclose(r.sumw, c[::-1])
    h2 = read_histogram(histo1d_text(c, np.sqrt(c), np.linspace(0, 0.5, 6), "/REF/one_minus_thrust"))
    np.testing.assert_allclose(plotting.yoda_reference("thrust", h2, "ref").sumw, c)
    assert plotting.match_yoda(["/REF/one_minus_thrust", "/REF/other"], ["thrust", "c_parameter"]) == {
        "thrust": "/REF/one_minus_thrust"}
    with pytest.raises(ValueError, match="no histogram of the YODA file matches"):
        plotting.match_yoda(["/REF/other"], ["thrust"])


def _number(pattern, text):
    m = re.search(pattern, text)
    assert m, text
    return [float(g) for g in m.groups()]


def test_compare_with_an_npz_written_by_diffgen(tmp_path, capsys):
    ref = tmp_path / "ref.npz"
    common = ["generate", "--process", "ee-mumu", "--events", "4000", "--chunk", "4000", "--quiet", "--bins", "12"]
    assert main(common + ["--seed", "1", "--out", str(ref)]) == 0
    capsys.readouterr()
    # the same seed: the reference is the run itself, histogrammed by the --compare path: ratio 1
    png = tmp_path / "same.png"
    assert main(common + ["--seed", "1", "--compare", str(ref), "--plot", str(png)]) == 0
    chi2, ndf = _number(r"compare cos_theta with ref.npz: chi2/ndf = ([0-9.]+)/(\d+)", capsys.readouterr().out)
    assert chi2 == 0.0 and ndf == 12 and png.read_bytes()[:4] == b"\x89PNG"
    # an independent sample: chi2 of two samples' normalised histograms
    png = tmp_path / "cmp.png"
    assert main(common + ["--seed", "2", "--compare", str(ref), "--plot", str(png)]) == 0
    chi2, ndf = _number(r"compare cos_theta with ref.npz: chi2/ndf = ([0-9.]+)/(\d+)", capsys.readouterr().out)
    # the 12 normalised bins sum to 1 in both samples: 11 degrees of freedom
    assert ndf == 12 and chi2 < _chi2_bound(11), chi2
    assert png.stat().st_size > 20_000


@pytest.mark.parametrize("suffix", [".hepmc3", ".lhe"])
def test_compare_absolute_normalises_unit_weights_to_the_files_cross_section(tmp_path, capsys, suffix):
    """A Pythia-like reference: unweighted events with weight 1 and σ in GenCrossSection / XSECUP."""
    from diffgen.io import read_events, write_hepmc, write_lhe

    common = ["generate", "--process", "ee-mumu", "--events", "8000", "--chunk", "8000", "--quiet", "--bins", "8"]
    assert main(common + ["--seed", "5", "--unweighted", "--out", str(tmp_path / "u.npz")]) == 0
    ev, meta = read_events(tmp_path / "u.npz")
    ev = ev.replace(log_weight=np.zeros_like(np.asarray(ev.log_weight)))  # Pythia's unit weights
    ref = tmp_path / f"ref{suffix}"
    if suffix == ".lhe":
        write_lhe(ref, ev, sigma_pb=meta["sigma_pb"], error_pb=meta["error_pb"])
    else:
        write_hepmc(ref, ev, sigma_pb=meta["sigma_pb"], error_pb=meta["error_pb"])
    capsys.readouterr()
    assert main(common + ["--seed", "6", "--absolute", "--compare", str(ref)]) == 0
    chi2, ndf = _number(rf"compare cos_theta with ref{suffix}: chi2/ndf = ([0-9.]+)/(\d+)", capsys.readouterr().out)
    assert ndf == 8 and chi2 < _chi2_bound(8), chi2  # without the normalisation: dσ/dX of 1/n per event


def test_compare_absolute_refuses_a_hepmc3_file_without_cross_section(tmp_path, capsys):
    from diffgen.io import write_hepmc

    gen = diffgen.presets.ee_mumu()
    ev = gen.sample(gen.default_params(), jax.random.key(0), 200)
    ref = tmp_path / "ref.hepmc3"
    write_hepmc(ref, ev)  # no sigma_pb: no GenCrossSection
    out = tmp_path / "ev.npz"
    rc = main(["generate", "--events", "1000", "--quiet", "--absolute", "--compare", str(ref), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "gives no positive cross-section" in err and str(ref) in err and "drop --absolute" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.hepmc3"]
    assert main(["generate", "--events", "1000", "--quiet", "--compare", str(ref)]) == 0  # shapes need no σ


def _analytic_yoda(path, edges, absolute):
    """The analytic dσ/dcos θ of e+e- → μ+μ- (pb per bin, or normalised) as a YODA histogram /REF/cos_theta."""
    hard = diffgen.presets.ee_mumu().default_params()["hard"]
    x, wq = np.polynomial.legendre.leggauss(16)
    contents = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        c = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        contents.append(0.5 * (hi - lo) * np.sum(wq * np.asarray(ee_ffbar.dsigma_dcos(hard, 13, 0.1056584, c))))
    contents = np.asarray(contents)
    if not absolute:
        contents = contents / float(ee_ffbar.sigma_total(hard, 13, 0.1056584))
    path.write_text(histo1d_text(contents, np.zeros_like(contents), edges, "/REF/cos_theta")
                    + histo1d_text([1.0], [0.1], [0.0, 1.0], "/REF/unrelated"))
    return contents


@pytest.mark.parametrize("absolute", [False, True])
def test_compare_with_a_yoda_file_uses_its_bins(tmp_path, capsys, absolute):
    ref = tmp_path / "ref.yoda"
    edges = np.array([-1.0, -0.6, -0.2, 0.0, 0.3, 0.7, 1.0])
    _analytic_yoda(ref, edges, absolute)
    assert len(read_histograms(str(ref))) == 2
    png = tmp_path / "y.png"
    args = ["generate", "--events", "8000", "--chunk", "8000", "--seed", "3", "--quiet", "--compare", str(ref),
            "--plot", str(png)] + (["--absolute"] if absolute else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 bins in [-1, 1]" in out  # the run used the YODA binning
    chi2, ndf = _number(r"compare cos_theta with ref.yoda: chi2/ndf = ([0-9.]+)/(\d+)", out)
    assert ndf == 6 and chi2 < _chi2_bound(6), chi2


def test_compare_errors_stop_before_generation_and_leave_no_files(tmp_path, capsys):
    out, png = tmp_path / "ev.npz", tmp_path / "p.png"
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"not a zip file")
    bad_yoda = tmp_path / "bad.yoda"
    bad_yoda.write_text("BEGIN YODA_HISTO1D_V2 /REF/cos_theta\n---\n0 1 x\nEND YODA_HISTO1D_V2\n")
    other = tmp_path / "other.yoda"
    other.write_text(histo1d_text([1.0], [0.1], [0.0, 1.0], "/REF/thrust"))
    cases = [(tmp_path / "missing.npz", "does not exist"), (bad_npz, "cannot be read"),
             (bad_yoda, "cannot be read|expected numbers"), (other, "no histogram of the YODA file matches"),
             (tmp_path / "x.txt", "does not exist")]
    (tmp_path / "y.txt").write_text("x")
    cases.append((tmp_path / "y.txt", "unknown suffix"))
    for path, message in cases:
        rc = main(["generate", "--events", "1000", "--quiet", "--compare", str(path), "--out", str(out),
                   "--plot", str(png)])
        captured = capsys.readouterr()
        assert rc == 2, (path, captured)
        assert re.search(message, captured.err), captured.err
        assert str(path) in captured.err and "sigma =" not in captured.out
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "bad.yoda", "other.yoda", "y.txt"]


def test_help_text_and_compact_or_full_histograms(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--compare FILE", "--absolute", "--histograms", "1/sigma dsigma/dX", "YODA",
                   "integer-aligned"):
        assert option in text, option
    assert main(["generate", "--events", "2000", "--quiet", "--bins", "5"]) == 0
    short = capsys.readouterr().out
    assert "|#" not in short and re.search(r"cos\(theta\): <cos\(theta\)> = \S+, 5 bins in \[-1, 1\]", short)
    assert main(["generate", "--events", "2000", "--quiet", "--bins", "5", "--histograms"]) == 0
    full = capsys.readouterr().out
    assert full.count("|#") == 5 and "dsigma per bin [pb] vs cos(theta)" in full
    assert len(full.splitlines()) > len(short.splitlines())
