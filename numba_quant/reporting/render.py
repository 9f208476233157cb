"""Writing a :class:`~numba_quant.reporting.report.Report` as text, Markdown and HTML.

The HTML is one self-contained page: tables, and plots drawn here as inline SVG (no
plotting library, no scripts, nothing fetched): SQNR per tensor for each recipe, and
value histograms of the lowest-SQNR tensors.
"""
from __future__ import annotations

import html
import math

import numpy as np

# Colours of the recipes' series (colour-blind-safe palette), in recipe order.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442",
           "#000000")


def _num(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _db(v):
    if v is None:
        return "-"
    if math.isnan(v) or math.isinf(v):
        return _num(v)
    return f"{v:.2f}"


def _shape(shape):
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _size(nbytes):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} B"


def _percent(fraction):
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "-"
    if fraction == 0:
        return "0"
    return f"{100 * fraction:.3g}%"


def _summary_rows(rep, worst=3):
    rows = []
    for name, s in rep.summary().items():
        rows.append([name, str(s["tensors"]), _size(s["bytes"]),
                     f"{s['compression']:.2f}x" if math.isfinite(s["compression"]) else "-",
                     _db(s["sqnr_db_weighted"]), _db(s["sqnr_db_total"]), _num(s["mse"]),
                     _num(s["max_abs_error"]), _percent(s["clipped_fraction"]),
                     ", ".join(s["worst"][:worst])])
    return rows


SUMMARY_HEADER = ["recipe", "tensors", "size", "compression", "SQNR dB (size-weighted)",
                  "SQNR dB (total)", "MSE", "max abs error", "clipped", "worst tensors"]


def _aligned(header, rows, left):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for row in [header] + rows:
        cells = [str(c).ljust(w) if i in left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def text(rep) -> str:
    """Tables for a terminal: a row per tensor (SQNR in dB per recipe), then the summary
    per recipe."""
    names = rep.recipe_names
    width = max(len(r.name) for r in rep.recipes) if rep.recipes else 0
    lines = ["recipes:"] + [f"  {r.name.ljust(width)}  {r.description}"
                            for r in rep.recipes] + [""]
    header = ["name", "shape", "dtype", "min", "max"] + [f"{n} dB" for n in names]
    rows = []
    for t in rep.tensors:
        row = [t.name + (f" [{t.nonfinite} non-finite omitted]" if t.nonfinite else ""),
               _shape(t.shape), t.dtype, _num(t.min), _num(t.max)]
        row += [_db(t.results[n].sqnr_db) if n in t.results else "-" for n in names]
        rows.append(row)
    if rows:
        lines += _aligned(header, rows, {0, 1, 2})
        lines.append("")
    lines.append("SQNR = 10 log10(sum x^2 / sum (q - x)^2) in dB (higher is better); "
                 f"original size {_size(sum(t.nbytes for t in rep.tensors))}")
    lines += _aligned(SUMMARY_HEADER[:-1] + ["worst tensor"], _summary_rows(rep, 1), {0, 9})
    for name, reason in rep.skipped:
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- Markdown

def _md_row(cells):
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _md_table(header, rows):
    return [_md_row(header), "| " + " | ".join("---" for _ in header) + " |"] + \
        [_md_row(r) for r in rows]


def markdown(rep) -> str:
    lines = ["# Quantization report", "", rep.description, "",
             f"{len(rep.tensors)} tensors, original size "
             f"{_size(sum(t.nbytes for t in rep.tensors))}; non-finite values: "
             f"{rep.nonfinite}; {rep.seconds:.2f} s.", "", "## Recipes", ""]
    lines += [f"- `{r.name}`: {r.description}" for r in rep.recipes]
    lines += ["", "## Summary", ""]
    lines += _md_table(SUMMARY_HEADER, _summary_rows(rep))
    lines += ["", "## Tensors", "", "SQNR in dB per recipe.", ""]
    names = rep.recipe_names
    lines += _md_table(["name", "shape", "dtype", "min", "max"] + names,
                       [[f"`{t.name}`", _shape(t.shape), t.dtype, _num(t.min), _num(t.max)]
                        + [_db(t.results[n].sqnr_db) if n in t.results else "-"
                           for n in names] for t in rep.tensors])
    lines += ["", "## Every tensor and recipe", ""]
    rows = []
    for t in rep.tensors:
        for n in names:
            if n in t.results:
                r = t.results[n]
                rows.append([f"`{t.name}`", n, _db(r.sqnr_db), _num(r.mse),
                             _num(r.max_abs_error), _percent(r.clipped_fraction),
                             str(r.bytes)])
    lines += _md_table(["tensor", "recipe", "SQNR dB", "MSE", "max abs error", "clipped",
                        "bytes"], rows)
    if rep.skipped:
        lines += ["", "## Skipped", ""] + [f"- `{n}`: {m}" for n, m in rep.skipped]
    if rep.errors:
        lines += ["", "## Errors", ""] + [f"- `{n}`: {m}" for n, m in rep.errors]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ SVG

def _ticks(lo, hi, count=5):
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def sqnr_svg(rep, width=900, height=340) -> str:
    """SQNR (dB) per tensor, one coloured series per recipe; exact results drawn at the
    top edge.  Each point's tooltip names the tensor and the value."""
    names = rep.recipe_names
    values = [t.results[n].sqnr_db for t in rep.tensors for n in names if n in t.results]
    finite = [v for v in values if math.isfinite(v)]
    if not rep.tensors or not finite:
        return ""
    left, right, top, bottom = 56, 150, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = min(finite), max(finite)
    lo, hi = math.floor(lo / 5) * 5 - (5 if lo == hi else 0), math.ceil(hi / 5) * 5 + 5
    n = len(rep.tensors)

    def px(i):
        return left + (plot_w * (i + 0.5) / n)

    def py(v):
        v = hi if v == math.inf else lo if v == -math.inf else v
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sqnr-plot" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
           "<title>SQNR per tensor and recipe</title>",
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
           'stroke="#999"/>']
    for tick in _ticks(lo, hi):
        y = py(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="11">{tick:g}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.0f}" font-size="12" '
               f'transform="rotate(-90 14 {top + plot_h / 2:.0f})" text-anchor="middle">'
               'SQNR (dB)</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" font-size="12" '
               f'text-anchor="middle">tensor (file order, {n} tensors)</text>')
    for k, name in enumerate(names):
        colour = COLOURS[k % len(COLOURS)]
        points = [(i, t.results[name].sqnr_db, t.name) for i, t in enumerate(rep.tensors)
                  if name in t.results and not math.isnan(t.results[name].sqnr_db)]
        if len(points) > 1:
            path = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v, _ in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       'stroke-width="1" opacity="0.6"/>')
        for i, v, tname in points:
            out.append(f'<circle class="point" cx="{px(i):.1f}" cy="{py(v):.1f}" r="2.5" '
                       f'fill="{colour}"><title>{html.escape(tname)}: {html.escape(name)} '
                       f'{_db(v)} dB</title></circle>')
        y = top + 14 + 16 * k
        out.append(f'<rect x="{left + plot_w + 12}" y="{y - 9}" width="10" height="10" '
                   f'fill="{colour}"/><text x="{left + plot_w + 28}" y="{y}" '
                   f'font-size="12">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram_svg(name, edges, counts, width=420, height=200) -> str:
    """Bars of a value histogram, counts on a log scale."""
    left, right, top, bottom = 40, 10, 22, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = np.asarray(counts)
    peak = math.log10(counts.max() + 1) if counts.size else 1.0
    bar_w = plot_w / max(len(counts), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f"<title>value histogram of {html.escape(name)}</title>",
           f'<text x="{left}" y="14" font-size="12">{html.escape(name)}</text>']
    for i, c in enumerate(counts):
        h = plot_h * math.log10(int(c) + 1) / peak if peak else 0
        out.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                   f'width="{max(bar_w - 0.5, 0.5):.1f}" height="{h:.1f}" fill="#0072b2">'
                   f'<title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {int(c)}</title></rect>')
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
               f'y2="{top + plot_h}" stroke="#999"/>')
    out.append(f'<text x="{left}" y="{height - 10}" font-size="11">{edges[0]:.4g}</text>')
    out.append(f'<text x="{left + plot_w}" y="{height - 10}" font-size="11" '
               f'text-anchor="end">{edges[-1]:.4g}</text>')
    out.append(f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">'
               f'{int(counts.max()) if counts.size else 0}</text>')
    out.append("</svg>")
    return "\n".join(out)


# ------------------------------------------------------------------------------ HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
td.name, th.name { text-align: left; font-family: monospace; }
.figures svg { margin: 0 1em 1em 0; }
"""


def _html_table(header, rows, cls, left=(0,)):
    out = [f'<table class="{cls}">', "<thead><tr>"
           + "".join(f'<th class="name">{html.escape(h)}</th>' if i in left
                     else f"<th>{html.escape(h)}</th>" for i, h in enumerate(header))
           + "</tr></thead>", "<tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="name">{html.escape(str(c))}</td>' if i in left
            else f"<td>{html.escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def html_body(rep) -> str:
    """The report as an HTML fragment (what Jupyter shows)."""
    names = rep.recipe_names
    parts = ['<div class="numba-quant-report">', "<h2>Quantization report</h2>",
             f"<p>{html.escape(rep.description)}: {len(rep.tensors)} tensors, original size "
             f"{_size(sum(t.nbytes for t in rep.tensors))}; {rep.seconds:.2f} s.</p>",
             "<ul>" + "".join(f"<li><b>{html.escape(r.name)}</b>: "
                              f"{html.escape(r.description)}</li>" for r in rep.recipes)
             + "</ul>",
             "<h3>Summary</h3>",
             _html_table(SUMMARY_HEADER, _summary_rows(rep), "summary", left=(0, 9))]
    plot = sqnr_svg(rep)
    if plot:
        parts += ["<h3>SQNR per tensor</h3>", f'<div class="figures">{plot}</div>']
    if rep.histograms:
        parts.append("<h3>Value histograms of the lowest-SQNR tensors</h3>")
        parts.append('<div class="figures">' + "".join(
            histogram_svg(n, e, c) for n, (e, c) in rep.histograms.items()) + "</div>")
    header = ["name", "shape", "dtype", "min", "max"]
    for n in names:
        header += [f"{n} SQNR dB", f"{n} MSE", f"{n} max err", f"{n} clipped",
                   f"{n} bytes"]
    rows = []
    for t in rep.tensors:
        row = [t.name, _shape(t.shape), t.dtype, _num(t.min), _num(t.max)]
        for n in names:
            r = t.results.get(n)
            row += ([_db(r.sqnr_db), _num(r.mse), _num(r.max_abs_error),
                     _percent(r.clipped_fraction), r.bytes] if r else ["-"] * 5)
        rows.append(row)
    parts += ["<h3>Tensors</h3>", _html_table(header, rows, "tensors")]
    if rep.skipped:
        parts.append("<h3>Skipped</h3><ul>" + "".join(
            f"<li><code>{html.escape(n)}</code>: {html.escape(m)}</li>"
            for n, m in rep.skipped) + "</ul>")
    if rep.errors:
        parts.append("<h3>Errors</h3><ul>" + "".join(
            f"<li><code>{html.escape(n)}</code>: {html.escape(m)}</li>"
            for n, m in rep.errors) + "</ul>")
    parts.append("</div>")
    return "\n".join(parts)


def html_page(rep) -> str:
    """A complete, self-contained HTML document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>numba_quant quantization report</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{html_body(rep)}\n</body>\n</html>\n")
