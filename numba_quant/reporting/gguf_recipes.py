"""Recipes of llama.cpp's GGUF types, by their lower-case names: ``q8_0``, ``q4_k``, ...

Each row of the tensor's 2-D view (for a linear layer's weight: one output channel, the
input dimension along the row, as ggml stores it) is quantized with
:func:`numba_quant.gguf.quantize` and dequantized back: the bytes and values of ggml's C
quantizers, without an importance matrix.  The bytes are ggml's block sizes, so the bits
per weight are the type's own (``q4_k`` 4.5, ``q6_k`` 6.5625, ``q8_0`` 8.5).

A row whose length is not a whole number of the type's blocks gets the type
llama-quantize falls back to for such a tensor: Q2_K, Q3_K and IQ4_XS become IQ4_NL,
Q4_K becomes Q5_0, Q5_K Q5_1, Q6_K Q8_0, TQ1_0 and TQ2_0 Q4_0, and F16 when the
fallback's block does not divide the row either; the recipe's ``settings`` and the
report's bytes follow the type actually used.  The types of 32-value blocks have no
fallback: their rows must be multiples of 32 (the report shows the tensor as failed for
that recipe otherwise, as llama-quantize refuses it).  Unlike llama-quantize, which keeps
1-D tensors (norms, biases) in F32, a report applies the type to every tensor it is given.

A report on the GPU quantizes each chunk there; under ``nonfinite="omit"`` (where the
chunk's NaN and infinities are set to 0 first) on the host.
"""
from __future__ import annotations

import numpy as np

from numba_quant import gguf
from numba_quant._dispatch import on_device, to_host
from numba_quant.reporting.recipe_types import Recipe

__all__ = ["GGUF_RECIPES", "fallback_type", "gguf_recipe"]

#: The GGUF recipes, by name (gguf's MXFP4 is the ``mxfp4`` recipe's format already).
GGUF_RECIPES = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k",
                "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0")

# llama-quantize's type for a tensor whose rows the chosen type's block does not divide.
_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0",
             "Q5_K": "Q5_1", "Q6_K": "Q8_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0"}


def fallback_type(name, n_per_row):
    """The GGUF type llama-quantize uses for rows of ``n_per_row`` values when asked for
    ``name``: ``name`` itself when its block divides the row, else the fallback above.

    Raises
    ------
    ValueError
        A type without a fallback (blocks of 32) and a row it does not divide.

    Examples
    --------
    >>> from numba_quant.reporting.gguf_recipes import fallback_type
    >>> fallback_type("Q4_K", 4096), fallback_type("Q4_K", 384), fallback_type("Q6_K", 100)
    ('Q4_K', 'Q5_0', 'F16')
    """
    name = name.upper()
    if n_per_row % gguf.block_size(name) == 0:
        return name
    if name not in _FALLBACK:
        raise ValueError(f"rows of {n_per_row} values are not a whole number of {name}'s "
                         f"blocks of {gguf.block_size(name)} (llama-quantize has no "
                         f"fallback type for {name})")
    other = _FALLBACK[name]
    return other if n_per_row % gguf.block_size(other) == 0 else "F16"


def gguf_recipe(name) -> Recipe:
    """The recipe of the GGUF type ``name`` (``"q4_k"``; see the module's text).

    Examples
    --------
    >>> import numpy as np
    >>> from numba_quant.reporting.gguf_recipes import gguf_recipe
    >>> recipe = gguf_recipe("q8_0")
    >>> recipe.nbytes(2, 64)          # 2 rows of two 34-byte blocks
    136
    """
    qtype = name.upper()
    if name not in GGUF_RECIPES:
        raise ValueError(f"{name!r} is not a GGUF recipe; GGUF recipes: "
                         f"{', '.join(GGUF_RECIPES)}")
    block = gguf.block_size(qtype)
    bits = gguf.row_size(qtype, block) * 8 / block

    def nbytes(rows, columns, shape=None):
        return int(rows * gguf.row_size(fallback_type(qtype, columns), columns))

    def fake_quantize(x, context):
        used = fallback_type(qtype, x.shape[1])
        if on_device(x) and context.nonfinite != "omit":
            # On the GPU, as the chunk came (the report brings the values back).
            return gguf.dequantize(gguf.quantize(x, used), used)
        dtype = x.dtype
        x = np.asarray(to_host(x), np.float32)
        if context.nonfinite == "omit" and not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, np.float32(0))
        xq = gguf.dequantize(gguf.quantize(x, used), used)
        return xq.astype(dtype, copy=False)

    return Recipe(name, f"llama.cpp's GGUF {qtype}: {bits:g} bits per weight, ggml's "
                        f"blocks of {block} along each row (no importance matrix)",
                  fake_quantize, nbytes, rows_independent=True,
                  settings={"gguf_type": qtype, "block_size": block,
                            "bits_per_weight": bits})
