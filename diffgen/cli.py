"""Command-line interface: ``diffgen generate`` and ``diffgen settings``.

Example::

    diffgen generate --process ee-mumu --sqrt-s 91.188 --events 100000 --seed 1 \\
        --set "23:m0=91.2" --out events.lhe --plot costheta.png

Everything is validated before any event is generated: process name, √s,
number of events, ``--set`` syntax, setting names and ranges, output paths.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

import numpy as np

__all__ = ["main", "parse_set", "text_histogram"]

_OUT_SUFFIXES = (".lhe", ".npz", ".parquet", ".hepmc3", ".hepmc", ".lhe.gz", ".hepmc3.gz", ".hepmc.gz")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def parse_set(items) -> dict[str, float]:
    """Parse ``["name=value", ...]`` into a dict (``ValueError`` on malformed entries)."""
    out: dict[str, float] = {}
    for item in items or []:
        if item.count("=") != 1:
            raise ValueError(f"malformed --set {item!r}: expected NAME=VALUE, e.g. --set \"23:m0=91.2\"")
        name, value = (s.strip() for s in item.split("="))
        if not name or ":" not in name:
            raise ValueError(f"malformed --set {item!r}: setting names look like 'Group:name', e.g. '23:m0'")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"malformed --set {item!r}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"malformed --set {item!r}: value must be finite")
        out[name] = v
    return out


def _check_output(path: str, suffixes, what: str) -> None:
    from diffgen.io.atomic import check_writable

    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory")
    if not path.lower().endswith(suffixes):
        raise ValueError(f"{what} {path!r} has an unknown suffix; allowed: {', '.join(suffixes)}")
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise ValueError(f"{what} {path!r}: directory {directory!r} does not exist")
    check_writable(path)


def text_histogram(contents, errors, edges, width: int = 50, label: str = "") -> str:
    """A terminal histogram: one line per bin with a bar scaled to the largest bin."""
    contents = np.asarray(contents, float)
    errors = np.asarray(errors, float)
    edges = np.asarray(edges, float)
    top = contents.max() if contents.size and contents.max() > 0 else 1.0
    lines = [label] if label else []
    for lo, hi, c, e in zip(edges[:-1], edges[1:], contents, errors):
        bar = "#" * int(round(width * max(c, 0.0) / top))
        lines.append(f"[{lo:+7.3f},{hi:+7.3f}) {c:11.4g} ± {e:9.3g} |{bar}")
    return "\n".join(lines)


def _cos_theta(events):
    p = np.asarray(events.p4)[:, 0, 1:]
    axis = np.asarray(events.p4_in)[:, 0, 1:]
    num = np.sum(p * axis, -1)
    den = np.sqrt(np.sum(p * p, -1) * np.sum(axis * axis, -1))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _analytic_dsigma(gen, params, centres):
    """Σ_f dσ_f/dcos θ at the bin centres (pb), for the overlay."""
    from diffgen.amplitudes import ee_ffbar
    from diffgen.processes import fermion_mass

    hard = params["hard"]
    total = np.zeros_like(centres)
    for f in gen.info.get("flavours", ()):
        total += np.asarray(ee_ffbar.dsigma_dcos(hard, f, fermion_mass(f), centres))
    return total


def _observable_specs(process: str, bins: int):
    """(name, label, fn(events) -> per-event values, edges) of the histograms the CLI prints."""
    if process != "ee-hadrons":
        return [("cos_theta", "cos(theta) of the outgoing fermion vs the e- beam", _cos_theta,
                 np.linspace(-1.0, 1.0, bins + 1))]
    import jax

    from diffgen import observables as obs

    def jitted(fn):
        f = jax.jit(fn)
        return lambda ev: np.asarray(f(ev))

    return [
        ("thrust", "thrust T", jitted(obs.thrust), np.linspace(0.5, 1.0, bins + 1)),
        ("c_parameter", "C-parameter", jitted(obs.c_parameter), np.linspace(0.0, 1.0, bins + 1)),
        ("sphericity", "sphericity S", jitted(obs.sphericity), np.linspace(0.0, 1.0, bins + 1)),
        ("charged_multiplicity", "charged multiplicity", jitted(obs.charged_multiplicity),
         np.arange(-0.5, 60.5, 2.0)),
    ]


def _plot(path, hists, sigma, title, analytic=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from diffgen.io.atomic import atomic_write

    plt.style.use(mplhep.style.ATLAS)
    n = len(hists)
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 5 * rows), squeeze=False)
    for ax, (name, label, h, herr, edges) in zip(axes.flat, hists):
        width = np.diff(edges)
        mplhep.histplot(h / width, edges, yerr=herr / width, ax=ax, histtype="errorbar", color="black",
                        label=f"diffgen, σ = {sigma:.4g} pb")
        if analytic is not None and name == "cos_theta":
            fine = np.linspace(edges[0], edges[-1], 200)
            ax.plot(fine, analytic(fine), color="tab:red", label="analytic dσ/dcos θ")
        ax.set_xlabel(label)
        ax.set_ylabel(f"dσ/d({name}) [pb]")
        ax.set_ylim(0, 1.35 * float(np.max(h / width)) if np.max(h) > 0 else 1.0)
        ax.set_title(title, fontsize=12)
        ax.legend(loc="upper center", fontsize=11)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    suffix = os.path.splitext(path)[1]
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=suffix.lstrip("."))
    plt.close(fig)


def _cmd_generate(args) -> int:
    import jax

    import diffgen
    from diffgen import presets

    # ---- validate everything before generating ---------------------------------------------
    if args.events is None or args.events <= 0:
        raise ValueError(f"--events must be a positive integer, got {args.events}")
    if args.chunk is None:
        args.chunk = 2000 if args.process == "ee-hadrons" else 100_000
    if args.chunk <= 0:
        raise ValueError(f"--chunk must be a positive integer, got {args.chunk}")
    if args.bins <= 0:
        raise ValueError(f"--bins must be a positive integer, got {args.bins}")
    if not (args.sqrt_s > 0 and math.isfinite(args.sqrt_s)):
        raise ValueError(f"--sqrt-s must be a positive number of GeV, got {args.sqrt_s}")
    changes = parse_set(args.set)
    if "Beams:eCM" in changes:
        raise ValueError("set the collision energy with --sqrt-s (which also checks the production threshold), "
                         f"not --set Beams:eCM={changes['Beams:eCM']:g}")
    if args.out:
        _check_output(args.out, _OUT_SUFFIXES, "--out")
    if args.plot:
        _check_output(args.plot, _PLOT_SUFFIXES, "--plot")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    gen = presets.make(args.process, args.sqrt_s)
    params = diffgen.with_settings(gen.default_params(), changes) if changes else gen.default_params()
    is_ffbar = args.process != "ee-hadrons"
    specs = _observable_specs(args.process, args.bins)

    # ---- generate in chunks, accumulating σ, A_FB and histograms (bounded memory) -----------
    key = jax.random.key(args.seed)
    acc = {"sw": 0.0, "sw2": 0.0, "n": 0, "fw": 0.0, "fw2": 0.0, "bw": 0.0, "bw2": 0.0, "bad": 0,
           "h": {s[0]: np.zeros(len(s[3]) - 1) for s in specs}, "h2": {s[0]: np.zeros(len(s[3]) - 1) for s in specs},
           "mean": {s[0]: 0.0 for s in specs}}

    def on_chunk(ev):
        status = np.asarray(ev.status)
        w = np.where(status == 0, np.exp(np.asarray(ev.log_weight, float)), 0.0)
        acc["n"] += w.size
        acc["bad"] += int(np.count_nonzero(status))
        acc["sw"] += w.sum()
        acc["sw2"] += (w * w).sum()
        for name, _, fn, edges in specs:
            x = np.asarray(fn(ev), float)
            acc["h"][name] += np.histogram(x, edges, weights=w)[0]
            acc["h2"][name] += np.histogram(x, edges, weights=w * w)[0]
            acc["mean"][name] += float(np.sum(w * x))
        if is_ffbar:
            f = _cos_theta(ev) > 0
            acc["fw"] += w[f].sum()
            acc["fw2"] += (w[f] ** 2).sum()
            acc["bw"] += w[~f].sum()
            acc["bw2"] += (w[~f] ** 2).sum()
        if writer is not None:  # stream the chunk out; HepMC3 events carry the running σ estimate
            writer.write(ev, *sigma_estimate())

    def sigma_estimate():  # σ ± error (pb) from the weights accumulated so far
        n = acc["n"]
        mean = acc["sw"] / n
        return float(mean), float(math.sqrt(max(acc["sw2"] / n - mean**2, 0.0) / n))

    writer = None
    if args.out:
        from diffgen.io import EventWriter

        writer = EventWriter(args.out, process=args.process, seed=args.seed)
    with writer if writer is not None else contextlib.nullcontext():
        diffgen.generate(gen, params, key, args.events, chunk=args.chunk, progress=not args.quiet,
                         on_chunk=on_chunk, keep=False)
        n = acc["n"]
        sigma, sigma_err = sigma_estimate()
        if writer is not None:
            writer.close(sigma_pb=sigma, error_pb=sigma_err)

    e_cm = float(diffgen.settings(params)["Beams:eCM"])
    print(f"diffgen {diffgen.__version__}: {args.process} at sqrt(s) = {e_cm:g} GeV, {n} events, seed {args.seed}")
    for name, value in diffgen.settings(params).items():
        print(f"  {name:32s} = {float(value):.6g}")
    print(f"sigma = {sigma:.6g} +- {sigma_err:.3g} pb")
    if is_ffbar:
        tot = acc["fw"] + acc["bw"]
        if tot > 0:
            afb = (acc["fw"] - acc["bw"]) / tot
            # variance of (F − B)/(F + B) by the delta method on the weighted sums
            afb_err = 2.0 * math.sqrt(acc["bw"] ** 2 * acc["fw2"] + acc["fw"] ** 2 * acc["bw2"]) / tot**2
            print(f"A_FB  = {afb:.5f} +- {afb_err:.5f}")
        else:
            print("A_FB  = undefined (no event with non-zero weight)")
    if acc["bad"]:
        print(f"events with status flags (zero weight): {acc['bad']}")
    hists = []
    for name, label, _, edges in specs:
        h = acc["h"][name] / n
        herr = np.sqrt(acc["h2"][name]) / n
        hists.append((name, label, h, herr, edges))
        if not is_ffbar and acc["sw"] > 0:
            print(f"<{name}> = {acc['mean'][name] / acc['sw']:.5g}")
        print(text_histogram(h, herr, edges, label=f"dsigma per bin [pb] vs {label}"))
    if args.out:
        skipped = f" ({writer.n_skipped} flagged events left out)" if writer.n_skipped else ""
        print(f"wrote {args.out}{skipped}")
    if args.plot:
        _plot(args.plot, hists, sigma, f"{args.process}, √s = {e_cm:g} GeV",
              analytic=(lambda c: _analytic_dsigma(gen, params, c)) if is_ffbar else None)
        print(f"wrote {args.plot}")
    return 0


def _cmd_settings(args) -> int:
    import diffgen
    from diffgen import presets
    from diffgen.params import SETTINGS

    gen = presets.make(args.process, args.sqrt_s)
    for name, value in diffgen.settings(gen.default_params()).items():
        spec = SETTINGS[name]
        print(f"{name:32s} {float(value):<12.6g} range [{spec.lo:g}, {spec.hi:g}] {spec.unit:7s} {spec.doc}")
    return 0


def _cmd_tune(args) -> int:
    from diffgen.fit import tune_file

    out = tune_file.run(args.config, out_dir=args.out, progress=not args.quiet)
    print(out.result.summary())
    print(f"wrote {os.path.join(out.config.out_dir, 'report.md')} and {len(out.files) - 1} more files")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from diffgen import presets

    parser = argparse.ArgumentParser(prog="diffgen", description="Differentiable event generator")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate events, print sigma, A_FB and a histogram")
    g.add_argument("--process", default="ee-mumu", help=f"one of {', '.join(sorted(presets.PROCESSES))}")
    g.add_argument("--sqrt-s", type=float, default=91.188, help="centre-of-mass energy in GeV")
    g.add_argument("--events", type=int, default=100_000, help="number of events")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help='change a setting, e.g. --set "23:m0=91.2" (repeatable)')
    g.add_argument("--out", help="event file (.lhe, .npz, .parquet or .hepmc3; .lhe.gz/.hepmc3.gz compressed)")
    g.add_argument("--plot", help="figure of the histograms (.png, .pdf or .svg)")
    g.add_argument("--chunk", type=int, default=None,
                   help="events per chunk (memory bound; default 100000, 2000 for ee-hadrons)")
    g.add_argument("--bins", type=int, default=20)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    t = sub.add_parser("tune", help="fit settings to the targets of a TOML tune file and write a report")
    t.add_argument("config", help="tune file (.toml); schema in diffgen.fit.tune_file")
    t.add_argument("--out", help="output directory (default: [output] dir in the file, else <file stem>-fit)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("settings", help="list a process's settings, defaults and ranges")
    s.add_argument("--process", default="ee-mumu")
    s.add_argument("--sqrt-s", type=float, default=91.188)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"generate": _cmd_generate, "tune": _cmd_tune, "settings": _cmd_settings}
    try:
        rc = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at interpreter exit
        return rc
    except ValueError as exc:
        print(f"diffgen: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `diffgen generate ... | head`: stop quietly; output files are already closed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not raise again
        return 141  # the shell's code for SIGPIPE (128 + 13)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
