"""Sub-byte codes: int4/uint4 codes packed two per byte, and back.

Nibble order: along the last axis, code ``2*i`` goes to the low nibble (bits 0-3) of
byte ``i`` and code ``2*i + 1`` to its high nibble (bits 4-7).  An odd last axis leaves
the high nibble of the last byte zero; :func:`unpack_int4` takes the original length.
Signed codes are stored as their 4-bit two's complement.
"""
import operator

import numpy as np

from numba_quant._dispatch import backend


def _check_codes(codes, signed):
    lowest, highest = (-8, 7) if signed else (0, 15)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers; got dtype {codes.dtype}")
    if codes.ndim == 0:
        raise ValueError("packing needs at least one axis; got a 0-d array")
    if codes.size and (codes.min() < lowest or codes.max() > highest):
        raise ValueError(f"{'int4' if signed else 'uint4'} codes must lie in [{lowest}, "
                         f"{highest}]; got values from {codes.min()} to {codes.max()}")


def pack_int4(codes, signed=None):
    """Two 4-bit codes per byte along the last axis (uint8, last axis ``ceil(n / 2)``).

    Parameters
    ----------
    codes : array_like of integers
        uint4 codes in [0, 15] or int4 codes in [-8, 7].
    signed : bool, optional
        Default: True for a signed integer dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_quant as nq
    >>> nq.pack_int4(np.array([1, 2, 15], np.uint8))
    array([33, 15], dtype=uint8)
    >>> nq.unpack_int4(nq.pack_int4(np.array([-8, 7, -1], np.int8)), 3, signed=True)
    array([-8,  7, -1], dtype=int8)
    """
    bk, like = backend(codes), codes
    codes = bk.to_host(codes)  # (packing runs on the host: one byte per two codes)
    signed = codes.dtype.kind == "i" if signed is None else bool(signed)
    _check_codes(codes, signed)
    nibbles = (codes.astype(np.int16) & 0xF).astype(np.uint8)
    if nibbles.shape[-1] % 2:
        nibbles = np.concatenate([nibbles, np.zeros(nibbles.shape[:-1] + (1,), np.uint8)],
                                 axis=-1)
    return bk.host_result(nibbles[..., 0::2] | (nibbles[..., 1::2] << 4), like)


def unpack_int4(packed, n, signed=False):
    """The codes of :func:`pack_int4`: ``n`` codes along the last axis.

    Returns uint8 codes in [0, 15], or int8 codes in [-8, 7] with ``signed``.
    """
    bk, like = backend(packed), packed
    packed = bk.to_host(packed)
    if packed.dtype != np.uint8:
        raise TypeError(f"packed codes must be uint8; got dtype {packed.dtype}")
    n = operator.index(n)
    if packed.ndim == 0 or not 2 * packed.shape[-1] - 1 <= n <= 2 * packed.shape[-1]:
        raise ValueError(f"{n} codes do not fit packed bytes of shape {packed.shape} "
                         f"(two per byte along the last axis)")
    codes = np.empty(packed.shape[:-1] + (2 * packed.shape[-1],), np.uint8)
    codes[..., 0::2] = packed & 0xF
    codes[..., 1::2] = packed >> 4
    codes = codes[..., :n]
    if signed:
        return bk.host_result(((codes.astype(np.int8) ^ 8) - 8).astype(np.int8), like)
    return bk.host_result(np.ascontiguousarray(codes), like)
