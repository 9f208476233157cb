"""Recipes of llama.cpp's GGUF types, by their lower-case names: ``q8_0``, ``q4_k``, ...

Each row of the tensor's 2-D view (for a linear layer's weight: one output channel, the
input dimension along the row, as ggml stores it) is quantized with
:func:`numba_quant.gguf.quantize` and dequantized back: the bytes and values of ggml's C
quantizers, without an importance matrix.  The bytes are ggml's block sizes, so the bits
per weight are the type's own (``q4_k`` 4.5, ``q6_k`` 6.5625, ``q8_0`` 8.5).

A row whose length is not a whole number of the type's blocks gets the type
llama-quantize falls back to for such a tensor
(:func:`numba_quant.export.gguf_rules.fallback_type`: Q4_K becomes Q5_0, Q5_K Q5_1,
Q6_K Q8_0, Q2_K, Q3_K, TQ1_0 and TQ2_0 Q4_0, IQ4_XS IQ4_NL, and F16 when that block
does not divide the row either, as for the 32-value types); the report's bytes follow
the type actually used.  Unlike llama-quantize, which keeps 1-D tensors (norms, biases)
in F32 and chooses more bits for some tensors, a report applies the type to every
tensor it is given (``numba-quant quantize`` writes the file with llama-quantize's
choices).

A report on the GPU quantizes each chunk there; under ``nonfinite="omit"`` (where the
chunk's NaN and infinities are set to 0 first) on the host.
"""
from __future__ import annotations

import numpy as np

from numba_quant import gguf
from numba_quant._dispatch import on_device, to_host
from numba_quant.export.gguf_rules import fallback_type
from numba_quant.reporting.recipe_types import Recipe

__all__ = ["GGUF_RECIPES", "gguf_recipe"]

#: The GGUF recipes, by name (gguf's MXFP4 is the ``mxfp4`` recipe's format already).
GGUF_RECIPES = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k",
                "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0")


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
