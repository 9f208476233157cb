"""The quantization-error report of a model: every tensor, every recipe, side by side.

:func:`report` reads a checkpoint tensor by tensor (see :mod:`numba_quant.reporting.checkpoint`),
fake-quantizes each float tensor with each recipe (see :mod:`numba_quant.reporting.recipes`) and
measures what quantizing costs: SQNR, mean squared error, largest absolute error, the
fraction of values clipped, and the bytes after quantization.  Large tensors are read
and quantized a chunk of rows at a time, so memory stays near one tensor's size whatever
the model's.

Metrics, per tensor and recipe, over the finite values ``x`` and their fake-quantized
values ``q``:

* SQNR (dB) ``= 10 log10(sum x^2 / sum (q - x)^2)``: +inf when quantization is exact,
  NaN for an all-zero tensor;
* MSE ``= mean (q - x)^2``; max abs error ``= max |q - x|``;
* clipped: the fraction of values that the recipe's codes cannot reach (clamped to the
  end codes, or beyond a float format's largest value);
* bytes: see :mod:`numba_quant.reporting.recipes`.

Per recipe: the size-weighted mean SQNR over tensors (weights: element counts; tensors
quantized exactly are left out of the mean and counted), the model's total SQNR
(``sum`` of all signal over ``sum`` of all error), the model size after quantization and
the tensors with the lowest SQNR.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from numba_quant._dispatch import backend, device_backend, to_host
from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._host.json_values import json_number
from numba_quant._host import tuning as _tuning
from numba_quant.reporting.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from numba_quant.reporting.recipes import ClipSteps, TensorContext, default_recipes, get_recipe
from numba_quant.reporting import render as _report_render
from numba_quant.reporting.recipes import _half_step_factor

__all__ = ["Report", "RecipeResult", "TensorResult", "report"]

#: How many of the lowest-SQNR tensors each recipe's summary names.
WORST = 5


@dataclass
class RecipeResult:
    """One recipe on one tensor."""
    sqnr_db: float
    mse: float
    max_abs_error: float
    clipped_fraction: float
    bytes: int
    signal: float = field(repr=False, default=0.0)   # sum x^2
    noise: float = field(repr=False, default=0.0)    # sum (q - x)^2
    clipped: int = field(repr=False, default=0)
    count: int = field(repr=False, default=0)

    def to_dict(self) -> dict:
        return {"sqnr_db": json_number(self.sqnr_db), "mse": json_number(self.mse),
                "max_abs_error": json_number(self.max_abs_error),
                "clipped_fraction": self.clipped_fraction, "bytes": self.bytes}


@dataclass
class TensorResult:
    """One tensor: what it is and, per recipe name, its :class:`RecipeResult`."""
    name: str
    shape: tuple
    dtype: str
    nbytes: int
    min: float
    max: float
    nonfinite: int = 0
    results: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "bytes": self.nbytes, "min": json_number(self.min),
                "max": json_number(self.max), "nonfinite": self.nonfinite,
                "recipes": {k: v.to_dict() for k, v in self.results.items()}}


def _sqnr_db(signal, noise):
    if signal == 0:
        return math.nan if noise == 0 else -math.inf
    if noise == 0:
        return math.inf
    if math.isnan(noise):
        return math.nan
    return 10.0 * math.log10(signal / noise)


@dataclass
class Report:
    """The result of :func:`report`.

    Attributes
    ----------
    description : str
        What was read.
    recipes : list of Recipe
    tensors : list of TensorResult
        One per float tensor, in file order.
    skipped : list of (name, reason)
        Tensors not reported (integer buffers and other non-float tensors).
    errors : list of (name, message)
        Tensors that could not be reported (non-finite values under
        ``nonfinite="raise"``, an empty tensor, a recipe's error).
    histograms : dict
        Tensor name -> ``(edges, counts)``: value histograms of the lowest-SQNR tensors.
    seconds : float
        Wall time of the run.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> w = np.linspace(-1, 1, 512, dtype=np.float32).reshape(4, 128)
    >>> r = nq.report({"w": w}, recipes=["int8", "int4-g128"])
    >>> round(r.tensors[0].results["int8"].sqnr_db, 1)
    50.4
    >>> r.summary()["int8"]["bytes"]
    528
    """
    description: str
    recipes: list
    tensors: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    histograms: dict = field(default_factory=dict)
    seconds: float = 0.0
    nonfinite: str = "raise"

    @property
    def recipe_names(self) -> list:
        return [r.name for r in self.recipes]

    def summary(self) -> dict:
        """Per recipe name: values, bytes, original bytes, compression, size-weighted and
        total SQNR, MSE, max abs error, clipped fraction, exact tensors, worst tensors."""
        out = {}
        for name in self.recipe_names:
            rows = [(t, t.results[name]) for t in self.tensors if name in t.results]
            values = sum(t.size for t, _ in rows)
            weighted = [(t.size, r.sqnr_db) for t, r in rows if math.isfinite(r.sqnr_db)]
            weight = sum(w for w, _ in weighted)
            signal = sum(r.signal for _, r in rows)
            noise = sum(r.noise for _, r in rows)
            count = sum(r.count for _, r in rows)
            ranked = sorted((r.sqnr_db, t.name) for t, r in rows
                            if not math.isnan(r.sqnr_db) and r.sqnr_db != math.inf)
            nbytes = sum(r.bytes for _, r in rows)
            tensor_bytes = sum(t.nbytes for t, _ in rows)
            out[name] = {
                "tensors": len(rows),
                "values": values,
                "bytes": nbytes,
                "original_bytes": tensor_bytes,
                "compression": tensor_bytes / nbytes if nbytes else math.nan,
                "sqnr_db_weighted": (sum(w * s for w, s in weighted) / weight
                                     if weight else math.nan),
                "sqnr_db_total": _sqnr_db(signal, noise),
                "mse": noise / count if count else math.nan,
                "max_abs_error": max((r.max_abs_error for _, r in rows), default=math.nan),
                "clipped_fraction": (sum(r.clipped for _, r in rows) / count
                                     if count else math.nan),
                "exact_tensors": sum(1 for _, r in rows if r.sqnr_db == math.inf),
                "worst": [n for _, n in ranked[:WORST]],
            }
        return out

    def to_dict(self) -> dict:
        """Everything as plain JSON values (NaN and infinities as strings)."""
        summary = {name: {k: (json_number(v) if isinstance(v, float) else v)
                          for k, v in s.items()} for name, s in self.summary().items()}
        return {
            "description": self.description,
            "nonfinite": self.nonfinite,
            "recipes": [{"name": r.name, "description": r.description,
                         "settings": r.settings} for r in self.recipes],
            "summary": summary,
            "tensors": [t.to_dict() for t in self.tensors],
            "skipped": [{"name": n, "reason": m} for n, m in self.skipped],
            "errors": [{"name": n, "message": m} for n, m in self.errors],
            "histograms": {n: {"edges": [float(e) for e in edges],
                               "counts": [int(c) for c in counts]}
                           for n, (edges, counts) in self.histograms.items()},
            "seconds": self.seconds,
        }

    def to_json(self, indent=1) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent) + "\n"

    def to_text(self) -> str:
        """The plain-text tables printed by the command line."""
        return _report_render.text(self)

    def to_markdown(self) -> str:
        """Markdown: the summary per recipe, then a row per tensor and recipe."""
        return _report_render.markdown(self)

    def to_html(self) -> str:
        """One self-contained HTML page: tables and inline SVG plots (SQNR per tensor and
        recipe; value histograms of the lowest-SQNR tensors)."""
        return _report_render.html_page(self)

    def _repr_html_(self) -> str:
        return _report_render.html_body(self)

    def save(self, path) -> None:
        """Write the report to ``path``: ``.html``/``.htm``, ``.md``/``.markdown``,
        ``.json``, or plain text for any other suffix."""
        text = _render_for(self, str(path))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def _render_for(rep, path):
    lower = path.lower()
    if lower.endswith((".html", ".htm")):
        return rep.to_html()
    if lower.endswith((".md", ".markdown")):
        return rep.to_markdown()
    if lower.endswith(".json"):
        return rep.to_json()
    return rep.to_text()


# ------------------------------------------------------------------------ computing

def value_range(x, omit):
    """``(lo, hi, nonfinite count)`` of an array on either device, from the library's
    own reduction; lo/hi None when no value is finite."""
    channels = backend(x).channels
    lo, hi, status = channels.channel_minmax(x, None, False)
    nonfinite = 0
    if status == codes.HAS_NONFINITE:
        nonfinite = channels.count_nonfinite(x)
        lo, hi, status = channels.channel_minmax(x, None, True)
        if status != codes.OK:
            return None, None, nonfinite
    return float(to_host(lo)[0]), float(to_host(hi)[0]), nonfinite


def _as_2d(raw, shape):
    """The stored values as (rows, columns): rows = shape[0] for 2-D and more."""
    rows = shape[0] if len(shape) >= 2 else 1
    columns = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) >= 2 else \
        int(np.prod(shape, dtype=np.int64))
    return raw.reshape(rows, columns)


def _chunks(rows, columns, whole):
    """Row ranges of about REPORT_CHUNK elements (one range when ``whole``)."""
    if whole:
        return [(0, rows)]
    step = max(1, _tuning.REPORT_CHUNK // max(columns, 1))
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


def _prepare(chunk, entry):
    x = entry.decode(chunk)
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    return x


def _apply(recipe, x, context, skip_nonfinite=False, device=None):
    """The error sums of ``recipe`` on the host chunk ``x``, quantized on ``device`` (a
    Backend; None: the host) and measured on the host."""
    # (numba loads with the first report, not with numba_quant)
    from numba_quant._cpu import metrics as _cpu_metrics
    on = x if device is None or device.device == "cpu" else device.from_host(x, None)
    result = recipe.fake_quantize(on, context)
    clip = None
    if isinstance(result, tuple):
        xq, clip = result
    else:
        xq = result
    xq = to_host(xq)
    if xq.shape != x.shape:
        raise ValueError(f"recipe {recipe.name} returned shape {xq.shape} for a chunk of "
                         f"shape {x.shape}")
    if xq.dtype != x.dtype:
        xq = xq.astype(x.dtype)
    sums = np.empty((x.shape[0], 5), np.float64)
    if isinstance(clip, ClipSteps):
        steps = np.ascontiguousarray(clip.steps, dtype=np.float64)
        factor = _half_step_factor(clip.bits)
        group = clip.group
    else:
        steps = np.zeros((1, 1), np.float64)
        factor = -1.0
        group = max(x.shape[1], 1)
    _cpu_metrics.error_sums(x, np.ascontiguousarray(xq), steps, group, factor,
                            skip_nonfinite, sums)
    totals = sums.sum(axis=0)
    totals[_cpu_metrics.MAX_ERROR] = sums[:, _cpu_metrics.MAX_ERROR].max() if len(sums) else 0
    if clip is not None and not isinstance(clip, ClipSteps):
        totals[_cpu_metrics.CLIPPED] = int(clip)
    return totals


def _histogram(entry, bins=64):
    """Value histogram of a tensor's finite values (read again, a chunk at a time)."""
    raw = _as_2d(entry.raw(), entry.shape)
    lo, hi = math.inf, -math.inf
    pieces = _chunks(raw.shape[0], raw.shape[1], False)
    for a, b in pieces:
        x = _prepare(raw[a:b], entry)
        finite = x[np.isfinite(x)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not lo <= hi:
        return None
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, np.int64)
    for a, b in pieces:
        x = _prepare(raw[a:b], entry)
        counts += np.histogram(x[np.isfinite(x)], bins=edges)[0]
    return edges, counts


class _Progress:
    """tqdm on a terminal when installed, else a counter line rewritten in place."""

    def __init__(self, total, enabled, stream):
        self.bar = None
        self.stream = stream
        self.enabled = enabled
        self.total = total
        self.done = 0
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="tensor", file=stream, leave=False)
            except ImportError:
                self.bar = None

    def step(self, name):
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(name[-40:], refresh=False)
            self.bar.update(1)
        else:
            self.stream.write(f"\rnumba-quant: {self.done}/{self.total} tensors")
            self.stream.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def report(source, recipes=None, *, include=None, exclude=None, nonfinite="raise",
           histograms=3, progress=False, device="cpu") -> Report:
    """Quantize every float tensor of a model with each recipe and measure the error.

    Parameters
    ----------
    source : str, os.PathLike, mapping or Checkpoint
        A ``.safetensors`` file or sharded directory, ``.npy``/``.npz``, a PyTorch
        ``.pt``/``.bin`` state dict (needs torch), or a mapping of names to arrays or
        tensors (see :func:`numba_quant.reporting.checkpoint.open_checkpoint`).
    recipes : sequence of str or Recipe, or str, optional
        Recipe names (see :mod:`numba_quant.reporting.recipes`; OneFlow settings such as
        ``"int4-affine"`` too; a string may list several, comma-separated) or
        :class:`~numba_quant.reporting.recipes.Recipe` objects; default:
        :func:`numba_quant.reporting.recipes.default_recipes`.
    include, exclude : str or sequence of str, optional
        Shell-style patterns on tensor names.
    nonfinite : {"raise", "omit"}
        A tensor holding NaN or infinity is an error (default, reported in ``errors``;
        the other tensors are still reported) or is measured over its finite values.
    histograms : int
        Value histograms of this many lowest-SQNR tensors (worst of each recipe first).
    progress : bool or file
        Show progress (tqdm when installed) on stderr, or on the given stream.
    device : {"cpu", "cuda"}
        Where the recipes quantize: ``"cuda"`` moves each chunk to the GPU and runs
        every recipe there (the CUDA kernels; the errors are measured on the host).

    Returns
    -------
    Report
        Per tensor and recipe: SQNR, MSE, max abs error, clipped fraction, bytes;
        ``summary()`` per recipe; ``to_json()``, ``to_markdown()``, ``to_html()``,
        ``_repr_html_()`` for Jupyter.

    Raises
    ------
    CheckpointError
        A file that cannot be read.
    ValueError
        An unknown recipe name or ``nonfinite`` policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> rng = np.random.default_rng(0)
    >>> weights = {"fc.weight": rng.standard_normal((64, 256), dtype=np.float32),
    ...            "fc.bias": rng.standard_normal(64, dtype=np.float32),
    ...            "steps": np.arange(3)}
    >>> r = nq.report(weights, recipes=["int8", "int8-layer"])
    >>> [t.name for t in r.tensors], r.skipped
    (['fc.weight', 'fc.bias'], [('steps', 'int64 tensor (not floating point)')])
    >>> r.summary()["int8"]["sqnr_db_weighted"] > r.summary()["int8-layer"]["sqnr_db_weighted"]
    True
    """
    _checks.nonfinite_policy(nonfinite)
    runner = device_backend() if _checks.device_name(device) == "cuda" else None
    if isinstance(recipes, str):
        recipes = [r.strip() for r in recipes.split(",") if r.strip()]
    chosen = [get_recipe(r) for r in (default_recipes() if recipes is None else recipes)]
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"recipes named twice: {names}")
    started = time.perf_counter()
    checkpoint = source if isinstance(source, Checkpoint) else open_checkpoint(
        source, include, exclude)
    rep = Report(checkpoint.description, chosen, skipped=list(checkpoint.skipped),
                 nonfinite=nonfinite)
    stream = sys.stderr if progress is True else progress
    bar = _Progress(len(checkpoint.tensors), bool(progress), stream)
    entries = {}
    try:
        for entry in checkpoint.tensors:
            try:
                result = _report_tensor(entry, chosen, nonfinite, rep.errors, runner)
            except CheckpointError as exc:
                rep.errors.append((entry.name, str(exc)))
                result = None
            if result is not None:
                rep.tensors.append(result)
                entries[entry.name] = entry
            bar.step(entry.name)
    finally:
        bar.close()
    for name in _worst_names(rep, histograms):
        hist = _histogram(entries[name])
        if hist is not None:
            rep.histograms[name] = hist
    rep.seconds = time.perf_counter() - started
    return rep


def _worst_names(rep, count):
    """Up to ``count`` tensor names: each recipe's worst in turn, then the next worst."""
    if count <= 0:
        return []
    ranked = []
    for name in rep.recipe_names:
        scored = sorted((t.results[name].sqnr_db, t.name) for t in rep.tensors
                        if name in t.results and math.isfinite(t.results[name].sqnr_db))
        ranked.append([n for _, n in scored])
    chosen = []
    for depth in range(max((len(r) for r in ranked), default=0)):
        for names in ranked:
            if depth < len(names) and names[depth] not in chosen:
                chosen.append(names[depth])
                if len(chosen) == count:
                    return chosen
    return chosen


def _report_tensor(entry, recipes, nonfinite, errors, device=None):
    """The :class:`TensorResult` of one tensor, or None (its error appended); the
    recipes run on ``device`` (a Backend; None: the host)."""
    from numba_quant._cpu.metrics import CLIPPED, COUNT, MAX_ERROR, NOISE, SIGNAL
    shape = tuple(entry.shape)
    if entry.size == 0:
        errors.append((entry.name, f"cannot quantize an empty tensor of shape {shape}"))
        return None
    raw = _as_2d(entry.raw(), shape)
    rows, columns = raw.shape
    omit = nonfinite == "omit"
    pieces = _chunks(rows, columns, False)
    # Pass 1: the tensor's range (per-layer recipes need it before any chunk is coded).
    lo, hi, bad = math.inf, -math.inf, 0
    first = None
    for a, b in pieces:
        x = _prepare(raw[a:b], entry)
        if len(pieces) == 1:
            first = x  # one chunk: decoded once for both passes
        clo, chi, n = value_range(x, omit)
        bad += n
        if clo is not None:
            lo, hi = min(lo, clo), max(hi, chi)
    if bad and not omit:
        errors.append((entry.name, str(_checks.nonfinite_error(bad))))
        return None
    if not lo <= hi:
        errors.append((entry.name, "no finite value to quantize"))
        return None
    context = TensorContext(entry.name, shape, lo, hi, nonfinite)
    result = TensorResult(entry.name, shape, entry.dtype, entry.nbytes, lo, hi, bad)
    # Pass 2: each chunk is decoded once for all the recipes that take rows alone; a
    # recipe that needs the whole tensor (a channel axis other than 0) gets it whole.
    totals = {r.name: np.zeros(5) for r in recipes}
    largest = {r.name: 0.0 for r in recipes}
    failed = {}

    def run(recipe, x):
        if recipe.name in failed:
            return
        try:
            t = _apply(recipe, x, context, bad > 0, device)
        except (ValueError, TypeError, ArithmeticError) as exc:
            failed[recipe.name] = " ".join(str(exc).split())
            return
        largest[recipe.name] = (max(largest[recipe.name], t[MAX_ERROR])
                                if not math.isnan(t[MAX_ERROR]) else math.nan)
        totals[recipe.name] += t

    by_rows = [r for r in recipes if r.rows_independent]
    whole = [r for r in recipes if not r.rows_independent]
    for a, b in pieces:
        if by_rows:
            x = first if first is not None else _prepare(raw[a:b], entry)
            for recipe in by_rows:
                run(recipe, x)
    if whole:
        x = first if first is not None else _prepare(raw, entry)
        for recipe in whole:
            run(recipe, x)
    for recipe in recipes:
        if recipe.name in failed:
            errors.append((entry.name, f"recipe {recipe.name}: {failed[recipe.name]}"))
            continue
        t = totals[recipe.name]
        count = int(t[COUNT])
        signal, noise = float(t[SIGNAL]), float(t[NOISE])
        result.results[recipe.name] = RecipeResult(
            sqnr_db=_sqnr_db(signal, noise),
            mse=noise / count if count else math.nan,
            max_abs_error=largest[recipe.name],
            clipped_fraction=float(t[CLIPPED]) / count if count else 0.0,
            bytes=int(recipe.nbytes(rows, columns)),
            signal=signal, noise=noise, clipped=int(t[CLIPPED]), count=count)
    return result
