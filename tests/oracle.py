"""A plain-numpy oracle of numba_quant's contract, ``docs/semantics.md``.

This module shares no code with ``numba_quant`` and never imports it.  Every function
works on numpy arrays only and does all arithmetic in the compute dtype ``T``
(float32 for float16/float32 input, float64 for float64 input; semantics.md §2):

* numpy scalars and arrays of dtype ``T`` only, never a Python float mixed in;
* ``x / s``, never ``x * (1 / s)``;
* ``np.rint`` for round half to even, :func:`round_away` for C's ``std::round``;
* ``np.log2`` on a float32 array is float32 ``log2f`` (7.9999995f gives 3.0, so its floor
  is 3, as OneFlow's CPU kernel);
* the clamps of OneFlow in OneFlow's order (upper bound first, then lower bound);
* multiply and add as separate roundings (numpy never fuses them);
* a zero min or max counts as +0.0, and a zero scale is +0.0 (semantics.md §7.1-7.2).

Its results are meant to be compared bit for bit (semantics.md §10.3).  It reproduces
every case of ``tests/data/oneflow_cases.npz`` that way (see ``test_oracle.py``).
Section numbers in the docstrings below are those of semantics.md.
"""
import numpy as np

FORMULAS = ("google", "cambricon")
SCHEMES = ("symmetric", "affine")
NONFINITE = ("raise", "omit")


class OracleError(ValueError):
    """Raised where the contract says the library raises ``ValueError``."""


# --------------------------------------------------------------------------- helpers
def compute_dtype(dtype):
    """The compute dtype T of an input dtype: float64 stays, float16/float32 give float32."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"not a float dtype: {dtype}")
    return np.dtype(np.float64) if dtype.itemsize == 8 else np.dtype(np.float32)


def as_compute(x):
    """``x`` as a native-endian array of its compute dtype (an exact conversion)."""
    x = np.asarray(x)
    T = compute_dtype(x.dtype)
    return np.array(x, dtype=T, copy=True), T.type


def _check(formula, bit, scheme):
    if formula not in FORMULAS:
        raise OracleError(f"formula {formula!r}")
    if scheme not in SCHEMES:
        raise OracleError(f"scheme {scheme!r}")
    if isinstance(bit, bool) or not isinstance(bit, (int, np.integer)) or not 2 <= bit <= 16:
        raise OracleError(f"bit {bit!r}")


def _rows(x, per_layer, axis):
    """The reduction slices of ``x`` as rows of a 2-D array (one row per channel)."""
    if per_layer:
        return x.reshape(1, -1)
    if x.ndim == 0:
        raise OracleError("per-channel needs at least one dimension")
    ax = axis + x.ndim if axis < 0 else axis
    if not 0 <= ax < x.ndim:
        raise OracleError(f"axis {axis}")
    return np.moveaxis(x, ax, 0).reshape(x.shape[ax], -1)


def _plus_zero(a, T):
    """``a`` with every zero made +0.0 (§7.1): the sign of a zero bound is not defined."""
    return np.where(a == T(0), T(0), a).astype(T)


def _min_max_rows(rows, nonfinite):
    """Per row (lo, hi) in T, after the non-finite policy (§3.1, §6.2); zeros are +0.0."""
    if rows.size == 0:
        raise OracleError(f"empty input or channel, rows {rows.shape}")
    finite = np.isfinite(rows)
    n_bad = int(rows.size - np.count_nonzero(finite))
    if n_bad:
        if nonfinite == "raise":
            raise OracleError(f"{n_bad} non-finite")
        if not finite.any(axis=1).all():
            raise OracleError("a slice has no finite element")
    T = rows.dtype.type
    lo = np.where(finite, rows, T(np.inf)).min(axis=1)
    hi = np.where(finite, rows, T(-np.inf)).max(axis=1)
    return _plus_zero(lo, T), _plus_zero(hi, T)


def round_away(v):
    """Round half away from zero (C ``std::round``), exactly, in v's dtype."""
    v = np.asarray(v)
    T = v.dtype.type
    t = np.trunc(v)
    return np.where(np.abs(v - t) >= T(0.5), t + np.copysign(T(1), v), t).astype(v.dtype)


def log2_floor(a):
    """``floor(log2(a))`` with log2 in a's own precision (float32 log2f for float32)."""
    a = np.asarray(a)
    with np.errstate(divide="ignore"):
        return np.floor(np.log2(a)).astype(a.dtype)


def _qmax_sym(T, bit):
    return T(2 ** (bit - 1) - 1)


def _qmax_aff(T, bit):
    return T(2 ** bit - 1)


def _qparams_from_range(lo, hi, formula, bit, scheme, T):
    """min_max_observer formulas (§3.2-3.5) from per-channel lo/hi arrays in T."""
    with np.errstate(all="ignore"):
        if formula == "cambricon":
            amax = np.maximum(np.abs(hi), np.abs(lo))
            shift = log2_floor(amax) - T(bit - 2)
            scale = np.where(amax == T(0), T(0), shift)
            zp = np.zeros_like(scale)
        elif scheme == "symmetric":
            amax = np.maximum(np.abs(hi), np.abs(lo))
            scale = amax / _qmax_sym(T, bit)
            zp = np.zeros_like(scale)
        else:
            scale = (hi - lo) / _qmax_aff(T, bit)
            zp = np.where(scale == T(0), T(0), -np.rint(lo / scale))
            scale = np.where(scale == T(0), T(0), scale)
    return scale.astype(T), zp.astype(T)


# --------------------------------------------------------------------------- observers
def min_max_observer(x, quantization_formula="google", quantization_bit=8,
                     quantization_scheme="symmetric", per_layer_quantization=True,
                     axis=0, nonfinite="raise"):
    """(scale, zero_point) of OneFlow's min_max_observer (§3), arrays of dtype T, shape (C,)."""
    _check(quantization_formula, quantization_bit, quantization_scheme)
    if nonfinite not in NONFINITE:
        raise OracleError(f"nonfinite {nonfinite!r}")
    x, T = as_compute(x)
    if x.size == 0:
        raise OracleError(f"empty input {x.shape}")
    lo, hi = _min_max_rows(_rows(x, per_layer_quantization, axis), nonfinite)
    return _qparams_from_range(lo, hi, quantization_formula, quantization_bit,
                               quantization_scheme, T)


def moving_average_min_max_observer(x, current_train_step, moving_max, moving_min, training,
                                    stop_update_after_iters, quantization_formula="google",
                                    quantization_bit=8, quantization_scheme="symmetric",
                                    momentum=0.95, axis=0, nonfinite="raise"):
    """One call of the moving-average observer (§4).

    Returns ``(scale, zero_point, new_moving_max, new_moving_min)``; the given state arrays
    are not modified.  Per-channel when ``moving_max`` has more than one element.
    """
    _check(quantization_formula, quantization_bit, quantization_scheme)
    x, T = as_compute(x)
    mmax = np.array(moving_max, dtype=T).reshape(-1)
    mmin = np.array(moving_min, dtype=T).reshape(-1)
    step = int(np.asarray(current_train_step).reshape(-1)[0])
    if training and step <= stop_update_after_iters:
        if x.size == 0:
            raise OracleError(f"empty input {x.shape}")
        lo, hi = _min_max_rows(_rows(x, mmax.size == 1, axis), nonfinite)
        m32 = np.float32(momentum)
        m = T(m32)
        om = T(np.float32(1) - m32)
        if quantization_formula == "cambricon" or quantization_scheme == "symmetric":
            a = np.maximum(np.abs(hi), np.abs(lo))
            mmax = np.where(mmax == T(0), a, (mmax * m) + (a * om)).astype(T)
            mmin = mmax.copy()
        else:
            mmax = np.where(mmax == T(0), hi, (mmax * m) + (hi * om)).astype(T)
            mmin = np.where(mmin == T(0), lo, (mmin * m) + (lo * om)).astype(T)
    scale, zp = moving_qparams(mmax, mmin, quantization_formula, quantization_bit,
                               quantization_scheme, T)
    return scale, zp, mmax, mmin


def moving_qparams(mmax, mmin, formula, bit, scheme, T):
    """Scale and zero point from a moving state (§4.3; note: round half AWAY from zero).

    A state holding -0.0 (a caller's) counts as +0.0 (§7.1); a zero scale is +0.0 (§7.2).
    """
    mmax = _plus_zero(np.asarray(mmax, dtype=T), T)
    mmin = _plus_zero(np.asarray(mmin, dtype=T), T)
    with np.errstate(all="ignore"):
        if formula == "cambricon":
            scale = np.where(mmax == T(0), T(0), log2_floor(mmax) - T(bit - 2))
            zp = np.zeros_like(scale)
        elif scheme == "symmetric":
            scale = _plus_zero(mmax / _qmax_sym(T, bit), T)
            zp = np.zeros_like(scale)
        else:
            scale = (mmax - mmin) / _qmax_aff(T, bit)
            zp = np.where(scale == T(0), T(0), -round_away(mmin / scale))
            scale = np.where(scale == T(0), T(0), scale)
    return np.asarray(scale, dtype=T).reshape(-1), np.asarray(zp, dtype=T).reshape(-1)


# --------------------------------------------------------------------------- fake quant
def _broadcast_param(p, x, axis, T, n):
    p = np.asarray(p).astype(T).reshape(-1)
    if n == 1:
        return p.reshape((1,) * x.ndim) if x.ndim else p.reshape(())
    shape = [1] * x.ndim
    shape[axis] = n
    return p.reshape(shape)


def float_codes(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
                quantization_scheme="symmetric", axis=0):
    """(codes q in T, effective scale in T broadcast, zero point in T broadcast, T) (§5)."""
    _check(quantization_formula, quantization_bit, quantization_scheme)
    x, T = as_compute(x)
    n = np.asarray(scale).size
    if n > 1:
        if x.ndim == 0:
            raise OracleError("per-channel on 0-d")
        axis = axis + x.ndim if axis < 0 else axis
        if x.shape[axis] != n:
            raise OracleError(f"scale size {n} vs {x.shape[axis]}")
    s = _broadcast_param(scale, x, axis, T, n)
    zp = _broadcast_param(zero_point, x, axis, T, n)
    b = quantization_bit
    with np.errstate(all="ignore"):
        if quantization_formula == "cambricon":
            # T(pow(2.0, int(shift))): a double power of two, then rounded to T.
            e = np.trunc(s.astype(np.float64)).astype(np.int64)
            s = np.ldexp(np.float64(1), e).astype(T)
            q = np.rint(x / s)
            lo, hi = T(-(2 ** (b - 1))), T(2 ** (b - 1) - 1)
            # A step that underflows to 0 in T acts as a zero scale (§5.8).
            scale_zero = s == T(0)
        elif quantization_scheme == "symmetric":
            q = np.rint(x / s)
            lo, hi = T(-(2 ** (b - 1))), T(2 ** (b - 1) - 1)
            scale_zero = s == T(0)
        else:
            q = np.rint((x / s) + zp)
            lo, hi = T(0), T(2 ** b - 1)
            scale_zero = s == T(0)
        # Symmetric and cambricon add no zero point: rint(x / s) keeps a quotient's -0.0
        # (§7.3).  The clamps in OneFlow's order: upper bound first.
        q = np.where(q > hi, hi, q)
        q = np.where(q < lo, lo, q)
        # Scale 0: code +0.0 (NaN stays NaN) (§5.9).
        q = np.where(scale_zero, np.where(np.isnan(x), x, T(0)), q)
    return q.astype(T), s, zp, T


def fake_quantization(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
                      quantization_scheme="symmetric", axis=0):
    """OneFlow's fake_quantization (§5.4): dtype T, x's shape."""
    q, s, zp, T = float_codes(x, scale, zero_point, quantization_formula, quantization_bit,
                              quantization_scheme, axis)
    with np.errstate(all="ignore"):
        if quantization_formula == "google" and quantization_scheme == "affine":
            out = (q - zp) * s
        else:
            out = q * s
    return np.asarray(out, dtype=T).reshape(np.shape(x))


def quantization(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
                 quantization_scheme="symmetric", axis=0):
    """OneFlow's quantization (§5.5): the float codes (affine: zero point NOT subtracted)."""
    q = float_codes(x, scale, zero_point, quantization_formula, quantization_bit,
                    quantization_scheme, axis)[0]
    return q.reshape(np.shape(x))


def code_dtype(quantization_formula, quantization_bit, quantization_scheme):
    """int8/int16 for symmetric and cambricon, uint8/uint16 for affine (§2.4)."""
    affine = quantization_formula == "google" and quantization_scheme == "affine"
    if quantization_bit <= 8:
        return np.dtype(np.uint8 if affine else np.int8)
    return np.dtype(np.uint16 if affine else np.int16)


def quantize(x, scale, zero_point, quantization_formula="google", quantization_bit=8,
             quantization_scheme="symmetric", axis=0):
    """Integer codes (§5.6); NaN input is an error."""
    if np.isnan(np.asarray(x, dtype=np.float64)).any():
        raise OracleError("NaN")
    q = quantization(x, scale, zero_point, quantization_formula, quantization_bit,
                     quantization_scheme, axis)
    return q.astype(code_dtype(quantization_formula, quantization_bit, quantization_scheme))


def dequantize(q, scale, zero_point, quantization_formula="google", quantization_bit=8,
               quantization_scheme="symmetric", axis=0, dtype=None):
    """Integer codes back to floats of ``dtype`` (§5.7).

    The default ``dtype`` is the scale's float dtype (float16 gives float32).
    """
    q = np.asarray(q)
    if dtype is None:
        T = compute_dtype(np.asarray(scale).dtype).type
    else:
        T = np.dtype(dtype).type
    n = np.asarray(scale).size
    if n > 1:
        axis = axis + q.ndim if axis < 0 else axis
    s = _broadcast_param(scale, q, axis, T, n)
    zp = _broadcast_param(zero_point, q, axis, T, n)
    qf = q.astype(T)
    with np.errstate(all="ignore"):
        if quantization_formula == "cambricon":
            e = np.trunc(s.astype(np.float64)).astype(np.int64)
            out = qf * np.ldexp(np.float64(1), e).astype(T)
        elif quantization_scheme == "symmetric":
            out = qf * s
        else:
            out = (qf - zp) * s
    return np.asarray(out, dtype=T).reshape(q.shape)


# --------------------------------------------------------------------------- block_size=
def block_grid(shape, block_size):
    """The parameters' shape of a block size: ``ceil(d / b)`` per axis."""
    if len(block_size) != len(shape) or any(not 1 <= b <= d for b, d in zip(block_size, shape)):
        raise OracleError(f"block_size {block_size} on shape {shape}")
    return tuple(-(-d // b) for d, b in zip(shape, block_size))


def _blocks(shape, block_size):
    """``(index, slices)`` of every block in C order over the grid; the last block along
    an axis may be shorter."""
    for index in np.ndindex(*block_grid(shape, block_size)):
        yield index, tuple(slice(j * b, min((j + 1) * b, d))
                           for j, b, d in zip(index, block_size, shape))


def block_min_max_observer(x, quantization_formula="google", quantization_bit=8,
                           quantization_scheme="symmetric", block_size=None, nonfinite="raise"):
    """``min_max_observer`` per block: each block observed per layer, by the formulas
    above; ``(scale, zero_point)`` of shape ``block_grid``.

    Under ``nonfinite="raise"`` any non-finite value anywhere is an error (as per layer);
    under ``"omit"`` a block with no finite value is.
    """
    x, T = as_compute(x)
    if x.size == 0:
        raise OracleError(f"empty input {x.shape}")
    if nonfinite == "raise" and not np.isfinite(x).all():
        raise OracleError("non-finite")
    grid = block_grid(x.shape, block_size)
    scale = np.empty(grid, T)
    zero_point = np.empty(grid, T)
    for index, where in _blocks(x.shape, block_size):
        s, z = min_max_observer(x[where], quantization_formula, quantization_bit,
                                quantization_scheme, True, nonfinite=nonfinite)
        scale[index] = s[0]
        zero_point[index] = z[0]
    return scale, zero_point


def block_apply(function, x, scale, zero_point, block_size, **settings):
    """``function`` (fake_quantization, quantization, quantize or dequantize above) per
    block of ``x``, with that block's scale and zero point (``scale[index]``)."""
    x = np.asarray(x)
    scale = np.asarray(scale)
    zero_point = np.asarray(zero_point)
    grid = block_grid(x.shape, block_size)
    if scale.shape != grid or zero_point.shape != grid:
        raise OracleError(f"parameters {scale.shape}, {zero_point.shape} for grid {grid}")
    out = None
    for index, where in _blocks(x.shape, block_size):
        part = function(x[where], scale[index], zero_point[index], **settings)
        if out is None:
            out = np.empty(x.shape, part.dtype)
        out[where] = part
    return out
