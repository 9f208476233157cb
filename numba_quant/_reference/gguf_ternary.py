"""ggml's ternary types TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights), one row at a
time, as scalar Numba functions shared by the CPU and GPU kernels (row interface and
conventions as in :mod:`numba_quant._reference.gguf_legacy`).

Both scale a 256-value block by its absolute maximum ``d`` and keep one of -d, 0, +d
per value: the trit ``lround(x / d) + 1``.  ggml ignores an importance matrix here.
"""
import numpy as np
from numba import njit

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._reference.gguf_legacy import c_int, c_roundf, load_f16, store_f16
from numba_quant._reference.gguf_rows import trips

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@njit(cache=True)
def _block_scale(x, s):
    amax = _F0
    for j in range(256):
        amax = max(amax, abs(x[s + j]))
    return amax


@njit(cache=True)
def _trit(v, inv):
    # lround(v * inv) + 1 as C keeps it in a uint8_t (only the low byte matters; an
    # infinite or NaN product, from a subnormal block maximum, gives 1 as on x86-64).
    return (c_int(c_roundf(v * inv)) + 1) & 0xFF


@njit(cache=True)
def _pack5(x, s, inv, stride, count, out, pos):
    # Byte m holds the 5 trits of values s + m + n*stride (n = 0..4, the first the most
    # significant base-3 digit), stored as ceil(q * 256 / 243) so that the trit n is
    # read back as the high byte of (byte * 3**n mod 256) * 3.
    for m in range(count):
        q = 0
        for n in range(5):
            q = (q * 3 + _trit(x[s + m + n * stride], inv)) & 0xFF
        out[pos + m] = np.uint8(((q * 256 + 242) // 243) & 0xFF)


# --------------------------------------------------------------------------- TQ1_0
@njit(cache=True, inline="always")
def quantize_row_tq1_0(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 54 bytes: qs (48 bytes: 32 bytes of 5 trits for values 0..159, stride 32,
    # then 16 bytes of 5 trits for values 160..239, stride 16), qh (4 bytes of 4 trits
    # for values 240..255, stride 4, shifted up one trit), d (f16).
    for ib in range(x.size // 256):
        s = ib * 256
        o = ib * 54
        d = _block_scale(x, s)
        inv = _F1 / d if d != _F0 else _F0
        store_f16(out, o + 52, d)
        _pack5(x, s, inv, 32, 32, out, o)
        _pack5(x, s + 160, inv, 16, 16, out, o + 32)
        for j in range(4):
            q = 0
            for m in range(4):
                q = (q * 3 + _trit(x[s + 240 + j + 4 * m], inv)) & 0xFF
            q = (q * 3) & 0xFF
            out[o + 48 + j] = np.uint8(((q * 256 + 242) // 243) & 0xFF)


@njit(cache=True, inline="always")
def _unpack_trit(byte, pow3):
    # Trit n of a byte of five, pow3 = 3**n: the high byte of (byte * 3**n mod 256) * 3,
    # minus 1 (int32 throughout, which vectorises).
    q = np.int32(np.int32(byte) * pow3) & np.int32(0xFF)
    return np.float32(np.int32(((q * np.int32(3)) >> np.int32(8)) - np.int32(1)))


@njit(cache=True, inline="always")
def _unpack_trits(data, pos, count, out, at, stride, trits, d):
    # The ``trits`` trits of the ``count`` bytes from ``pos``: trit n of byte m is value
    # at + n*stride + m, times d.
    pow3 = np.int32(1)
    src = np.uint64(pos)
    for n in range(trits):
        dst = np.uint64(at + n * stride)
        for m in range(trips(out, count)):
            out[dst + m] = _unpack_trit(data[src + m], pow3) * d
        pow3 = np.int32(pow3 * np.int32(3))


@njit(cache=True, inline="always")
def dequantize_row_tq1_0(data, out):
    for ib in range(out.size // 256):
        o = ib * 54
        y = ib * 256
        d = load_f16(data, o + 52)
        _unpack_trits(data, o, 32, out, y, 32, 5, d)
        _unpack_trits(data, o + 32, 16, out, y + 160, 16, 5, d)
        _unpack_trits(data, o + 48, 4, out, y + 240, 4, 4, d)


# --------------------------------------------------------------------------- TQ2_0
@njit(cache=True, inline="always")
def quantize_row_tq2_0(x, qw, has_qw, out, fscratch, iscratch):
    # Block of 66 bytes: qs (64 bytes; byte 32*h + m holds the 2-bit trits of values
    # 128*h + m + 32*n in bits 2n, 2n+1), d (f16).
    for ib in range(x.size // 256):
        s = ib * 256
        o = ib * 66
        d = _block_scale(x, s)
        inv = _F1 / d if d != _F0 else _F0
        store_f16(out, o + 64, d)
        for h in range(2):
            for m in range(32):
                q = 0
                for n in range(4):
                    q += (_trit(x[s + 128 * h + m + 32 * n], inv) & 3) << (2 * n)
                out[o + 32 * h + m] = np.uint8(q & 0xFF)


@njit(cache=True, inline="always")
def dequantize_row_tq2_0(data, out):
    for ib in range(out.size // 256):
        o = ib * 66
        y = ib * 256
        d = load_f16(data, o + 64)
        for h in range(2):
            for n in range(4):
                src = np.uint64(o + 32 * h)
                dst = np.uint64(y + 128 * h + 32 * n)
                shift = np.int32(2 * n)
                for m in range(trips(out, 32)):
                    q = np.int32(((np.int32(data[src + m]) >> shift) & np.int32(3)) - np.int32(1))
                    out[dst + m] = np.float32(q) * d
