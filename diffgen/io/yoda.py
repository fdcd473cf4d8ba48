"""YODA text: read 1-d histograms (``HISTO1D`` V1/V2/V3 or ``SCATTER2D``), write ``HISTO1D_V2``.

Pure text ↔ arrays, independent of the fit (which turns the arrays into targets,
:func:`diffgen.fit.targets.from_yoda_text`). Contents are per bin; a ``SCATTER2D`` read with
``scatter_density=True`` (Rivet reference data: y per unit x) is multiplied by the bin widths.

* ``YODA_HISTO1D`` V1/V2: ``Total``/``Underflow``/``Overflow`` lines then rows
  ``xlow xhigh sumw sumw2 sumwx sumwx2 numEntries``; V3: ``Edges(A1): [...]`` then rows
  ``sumw sumw2 sumwx sumwx2 numEntries`` including under- and overflow. contents = sumw,
  errors = √sumw2.
* ``YODA_SCATTER2D``: rows ``x x− x+ y y− y+``; errors the mean of y− and y+.

Example:
    >>> from diffgen.io.yoda import histo1d_text, read_histogram
    >>> h = read_histogram(histo1d_text([1.0, 3.0], [0.5, 0.5], [-1.0, 0.0, 1.0], "/A/h"))
    >>> h.path, h.edges.tolist(), h.contents.tolist()
    ('/A/h', [-1.0, 0.0, 1.0], [1.0, 3.0])
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

__all__ = ["YodaHistogram", "read_histogram", "read_histograms", "histo1d_text"]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"


class YodaHistogram(NamedTuple):
    """One histogram read from YODA text: per-bin ``contents`` and ``errors`` f[B], ``edges`` f[B+1]."""

    path: str
    kind: str
    edges: np.ndarray
    contents: np.ndarray
    errors: np.ndarray


def _floats(line: str, lineno: int, n: int | None, where: str) -> list[float]:
    parts = line.split()
    try:
        vals = [float(x) for x in parts]
    except ValueError:
        raise ValueError(f"{where}, line {lineno}: expected numbers, got {line.strip()!r}") from None
    if n is not None and len(vals) != n:
        raise ValueError(f"{where}, line {lineno}: expected {n} numbers, got {len(vals)} in {line.strip()!r}")
    return vals


def _blocks(text: str, where: str):
    """Yield (kind, path, body lines with line numbers) for each BEGIN ... END block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("BEGIN "):
            head = line.split()
            kind = head[1] if len(head) > 1 else ""
            path = head[2] if len(head) > 2 else ""
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("END "):
                if lines[j].strip().startswith("BEGIN "):
                    raise ValueError(f"{where}, line {j + 1}: BEGIN inside the block opened on line {i + 1}")
                body.append((j + 1, lines[j]))
                j += 1
            if j >= len(lines):
                raise ValueError(f"{where}, line {i + 1}: block {kind} {path} has no END line")
            end_kind = lines[j].split()[1] if len(lines[j].split()) > 1 else ""
            if end_kind != kind:
                raise ValueError(f"{where}, line {j + 1}: END {end_kind} does not close BEGIN {kind}")
            yield kind, path, body
            i = j + 1
        else:
            i += 1


def _histo(kind: str, path: str, body, where: str):
    """(edges, sumw, sumw2) of a HISTO1D block (V1/V2 rows with xlow xhigh, or V3 Edges + rows)."""
    data = [(n, ln) for n, ln in body if ln.strip() and not ln.strip().startswith("#")]
    try:
        start = next(k for k, (_, ln) in enumerate(data) if ln.strip() == "---") + 1
    except StopIteration:
        start = next((k for k, (_, ln) in enumerate(data) if re.match(rf"\s*(?:{_NUM}|Edges|Total)", ln)), 0)
    rows = data[start:]
    where = f"{where}: {kind} {path}"
    if kind.endswith("_V3"):
        edge_line = next(((n, ln) for n, ln in rows if ln.strip().startswith("Edges")), None)
        if edge_line is None:
            raise ValueError(f"{where}: missing 'Edges(A1): [...]' line")
        m = re.search(r"\[(.*)\]", edge_line[1])
        if m is None:
            raise ValueError(f"{where}, line {edge_line[0]}: malformed edges {edge_line[1].strip()!r}")
        edges = _floats(m.group(1).replace(",", " "), edge_line[0], None, where)
        vals = [_floats(ln, n, 5, where) for n, ln in rows if not ln.strip().startswith(("Edges", "ErrorLabels"))]
        if len(vals) != len(edges) + 1:
            raise ValueError(f"{where}: {len(edges) - 1} bins from the edges need {len(edges) + 1} rows "
                             f"(with under- and overflow), got {len(vals)}")
        vals = vals[1:-1]
        return np.asarray(edges), np.asarray([v[0] for v in vals]), np.asarray([v[1] for v in vals])
    lo, hi, sw, sw2 = [], [], [], []
    for n, ln in rows:
        head = ln.split()[0]
        if head in ("Total", "Underflow", "Overflow"):
            _floats(" ".join(ln.split()[2:]), n, 5, where)
            continue
        v = _floats(ln, n, 7, where)
        lo.append(v[0])
        hi.append(v[1])
        sw.append(v[2])
        sw2.append(v[3])
    if not lo:
        raise ValueError(f"{where}: no bins")
    if not np.allclose(lo[1:], hi[:-1], rtol=1e-9, atol=1e-12):
        raise ValueError(f"{where}: bins are not contiguous (xhigh of one bin != xlow of the next)")
    return np.asarray(lo + [hi[-1]]), np.asarray(sw), np.asarray(sw2)


def _scatter(kind: str, path: str, body, where: str):
    """(edges, y, yerr) of a SCATTER2D block (rows: x, x−, x+, y, y−, y+; errors averaged)."""
    where = f"{where}: {kind} {path}"
    rows = []
    started = not any(ln.strip() == "---" for _, ln in body)
    for n, ln in body:
        s = ln.strip()
        if s == "---":
            started = True
            continue
        if not started or not s or s.startswith("#") or re.match(r"^[A-Za-z]", s):
            continue
        rows.append(_floats(s, n, 6, where))
    if not rows:
        raise ValueError(f"{where}: no points")
    lo = [r[0] - r[1] for r in rows]
    hi = [r[0] + r[2] for r in rows]
    if not np.allclose(lo[1:], hi[:-1], rtol=1e-6, atol=1e-9):
        raise ValueError(f"{where}: points do not form contiguous bins (x + xerr+ != next x - xerr-)")
    y = np.asarray([r[3] for r in rows])
    err = np.asarray([0.5 * (abs(r[4]) + abs(r[5])) for r in rows])
    return np.asarray(lo + [hi[-1]]), y, err


def _read_text(path_or_text) -> tuple[str, str]:
    """(text, where): the argument itself if it is YODA text, else the file it names."""
    text = os.fspath(path_or_text) if isinstance(path_or_text, os.PathLike) else path_or_text
    if not isinstance(text, str):
        raise ValueError(f"expected a path or YODA text, got {type(path_or_text).__name__}")
    if "BEGIN " in text:
        return text, "YODA text"
    if not os.path.isfile(text):
        raise ValueError(f"YODA file {text!r} does not exist (and the argument is not YODA text)")
    with open(text, encoding="utf-8") as fh:
        return fh.read(), f"YODA file {text!r}"


def read_histogram(path_or_text, histogram: str | None = None, *, scatter_density: bool = True) -> YodaHistogram:
    """The one ``HISTO1D``/``SCATTER2D`` histogram of YODA text (a file path or the text itself).

    ``histogram`` selects a block by its path when there are several. With ``scatter_density`` a
    scatter's y (per unit x) and its errors are multiplied by the bin widths, so the result is
    always per bin. ``ValueError`` (with a line number) on malformed text.
    """
    text, where = _read_text(path_or_text)
    blocks = [b for b in _blocks(text, where) if b[0].startswith(("YODA_HISTO1D", "YODA_SCATTER2D"))]
    if not blocks:
        raise ValueError(f"{where}: no YODA_HISTO1D or YODA_SCATTER2D block found")
    if histogram is not None:
        chosen = [b for b in blocks if b[1] == histogram]
        if not chosen:
            raise ValueError(f"{where}: no histogram with path {histogram!r}; it has {[b[1] for b in blocks]}")
        blocks = chosen
    if len(blocks) > 1:
        raise ValueError(f"{where} holds {len(blocks)} histograms {[b[1] for b in blocks]}; choose one with histogram=")
    kind, path, body = blocks[0]
    if kind.startswith("YODA_HISTO1D"):
        edges, contents, sumw2 = _histo(kind, path, body, where)
        return YodaHistogram(path, kind, edges, contents, np.sqrt(np.abs(sumw2)))
    edges, y, err = _scatter(kind, path, body, where)
    if scatter_density:
        y, err = y * np.diff(edges), err * np.diff(edges)
    return YodaHistogram(path, kind, edges, y, err)


def histo1d_text(contents, errors, edges, path: str, title: str | None = None) -> str:
    """YODA ``HISTO1D_V2`` text (sumw = contents, sumw2 = errors²; moments set to 0)."""
    c, s, e = (np.asarray(x, float) for x in (contents, errors, edges))
    title = path.rstrip("/").split("/")[-1] if title is None else title
    lines = [f"BEGIN YODA_HISTO1D_V2 {path}", f"Path: {path}", f"Title: {title}", "Type: Histo1D", "---",
             f"# Area: {c.sum():.17e}", "# ID\t ID\t sumw\t sumw2\t sumwx\t sumwx2\t numEntries",
             f"Total\tTotal\t{c.sum():.17e}\t{(s ** 2).sum():.17e}\t0\t0\t{c.size}",
             "Underflow\tUnderflow\t0\t0\t0\t0\t0", "Overflow\tOverflow\t0\t0\t0\t0\t0",
             "# xlow\t xhigh\t sumw\t sumw2\t sumwx\t sumwx2\t numEntries"]
    for lo, hi, ci, si in zip(e[:-1], e[1:], c, s):
        lines.append(f"{lo:.17e}\t{hi:.17e}\t{ci:.17e}\t{si * si:.17e}\t0\t0\t1")
    lines.append("END YODA_HISTO1D_V2")
    return "\n".join(lines) + "\n"


def read_histograms(path_or_text, *, scatter_density: bool = True) -> dict[str, YodaHistogram]:
    """Every ``HISTO1D``/``SCATTER2D`` histogram of YODA text (a file path or the text), by YODA path.

    Other blocks (counters, 2-d histograms) are skipped. ``ValueError`` (naming the file and line) on
    malformed text, or when there is no 1-d histogram at all.

    Example:
        >>> from diffgen.io.yoda import histo1d_text, read_histograms
        >>> text = histo1d_text([1.0], [1.0], [0.0, 1.0], "/A/x") + histo1d_text([2.0], [1.0], [0.0, 1.0], "/A/y")
        >>> sorted(read_histograms(text))
        ['/A/x', '/A/y']
    """
    text, where = _read_text(path_or_text)
    out: dict[str, YodaHistogram] = {}
    for kind, path, body in _blocks(text, where):
        if not kind.startswith(("YODA_HISTO1D", "YODA_SCATTER2D")):
            continue
        if path in out:
            raise ValueError(f"{where}: histogram path {path!r} appears twice")
        if kind.startswith("YODA_HISTO1D"):
            edges, contents, sumw2 = _histo(kind, path, body, where)
            out[path] = YodaHistogram(path, kind, edges, contents, np.sqrt(np.abs(sumw2)))
        else:
            edges, y, err = _scatter(kind, path, body, where)
            if scatter_density:
                y, err = y * np.diff(edges), err * np.diff(edges)
            out[path] = YodaHistogram(path, kind, edges, y, err)
    if not out:
        raise ValueError(f"{where}: no YODA_HISTO1D or YODA_SCATTER2D block found")
    return out
