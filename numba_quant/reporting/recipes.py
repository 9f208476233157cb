"""Quantization recipes: named settings that a report compares side by side.

A :class:`Recipe` is a name, a description, a function that fake-quantizes a float array
(quantize, then dequantize: the values a quantized model would compute with) and a
function giving the bytes the quantized tensor takes.  The registry holds the built-in
recipes; :func:`register` adds your own.

Built in, always:

``int8``
    int8 codes, symmetric, one scale per output channel (axis 0).
``int8-layer``
    int8 codes, symmetric, one scale for the whole tensor.
``int4-g128``
    4-bit codes, affine (a zero point per group), one scale per group of 128 consecutive
    values along the input dimension (the last one of the 2-D view, below): OneFlow's
    google affine formulas applied to each group, i.e. ``min_max_observer`` and
    ``fake_quantization`` with ``block_size=(1, 128)`` (``(1, columns)`` for rows shorter
    than 128).

and every setting of OneFlow's observers by name: ``int<bits>[-affine][-layer]`` (google
formula) and ``cambricon<bits>[-layer]`` (power-of-two steps), e.g. ``int4``,
``int6-affine-layer``, ``cambricon8``; ``-axis<k>`` picks a channel axis other than 0.

and the float formats: ``fp8`` (E4M3, one scale per output channel), ``mxfp8``,
``mxfp4`` (OCP microscaling, blocks of 32) and ``nvfp4`` (blocks of 16 with FP8 scales);

and llama.cpp's GGUF types by their lower-case names (``q8_0``, ``q4_0``, ``q4_k``,
``q5_k``, ``q6_k``, ``iq4_xs``, ...; :mod:`numba_quant.reporting.gguf_recipes`), the
bytes and values of ggml's quantizers, with llama-quantize's fallback type for rows that
the type's blocks do not divide.
:func:`available_recipes` lists them all.

How tensors are seen: a tensor of two or more dimensions is viewed as a matrix of
``shape[0]`` rows (output channels) by the product of the other dimensions, the layout of
a linear layer's weight and of a convolution's weight flattened per output channel.
Per-channel recipes give each row its own scale; block recipes cut each row into blocks
(a shorter last block when the row length is not a multiple of the block).  1-D and 0-d
tensors (biases, LayerNorm weights) are quantized per layer by per-channel recipes, never
with one channel per element, and form one row for block recipes.

Bytes after quantization count the codes packed (``bits`` per value, rounded up to whole
bytes per tensor), scales as float32 (4 bytes), zero points in the code's width, cambricon
shifts and E8M0/E4M3 block scales as one byte each.
"""
from __future__ import annotations

import re

import numpy as np

from numba_quant._host import checks as _checks
from numba_quant._host.storage import fp8_to_float32
from numba_quant.fake_quant import fake_quantization
from numba_quant.float8 import from_float8, to_float8
from numba_quant.mx import from_mx, to_mx
from numba_quant.nvfp4 import from_nvfp4, to_nvfp4
from numba_quant.observer import min_max_observer
from numba_quant.reporting.gguf_recipes import GGUF_RECIPES, gguf_recipe
from numba_quant.reporting.recipe_types import ClipSteps, Recipe, TensorContext

__all__ = ["ClipSteps", "Recipe", "TensorContext", "available_recipes", "default_recipes",
           "get_recipe", "oneflow_recipe", "register"]


_REGISTRY: dict = {}

#: The recipes a report runs when none are named, in this order.
DEFAULT_RECIPES = ("int8", "int8-layer", "int4-g128", "fp8", "mxfp8", "mxfp4", "nvfp4")


def register(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Add a recipe to the registry (``replace=True`` to redefine a name)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register takes a Recipe; got {type(recipe).__name__}")
    if recipe.name in _REGISTRY and not replace:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered")
    _REGISTRY[recipe.name] = recipe
    return recipe


def available_recipes() -> list:
    """Names of the registered recipes, built-in ones first.

    Examples
    --------
    >>> from numba_quant.reporting.recipes import available_recipes
    >>> available_recipes()[:3]
    ['int8', 'int8-layer', 'int4-g128']
    """
    return list(_REGISTRY)


def default_recipes() -> list:
    """The recipes a report runs by default: :data:`DEFAULT_RECIPES`."""
    return list(DEFAULT_RECIPES)


_ONEFLOW_NAME = re.compile(r"^(int|cambricon)(\d+)(-affine)?(-layer|-axis(-?\d+))?$")


def get_recipe(name) -> Recipe:
    """The recipe of a name: a registered one or a OneFlow setting (``int4-affine``).

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones).

    Examples
    --------
    >>> from numba_quant.reporting.recipes import get_recipe
    >>> get_recipe("int6-affine-layer").settings["quantization_scheme"]
    'affine'
    """
    if isinstance(name, Recipe):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    match = _ONEFLOW_NAME.match(name) if isinstance(name, str) else None
    if match:
        kind, bits, affine, layout, axis = match.groups()
        if kind == "cambricon" and affine:
            raise ValueError(f"recipe {name!r}: cambricon has no affine scheme")
        return oneflow_recipe("cambricon" if kind == "cambricon" else "google", int(bits),
                              "affine" if affine else "symmetric",
                              per_channel=layout != "-layer",
                              axis=int(axis) if axis is not None else 0)
    text = f"unknown recipe {name!r}; available: {', '.join(_REGISTRY)}"
    text += ", and any OneFlow setting int<bits>[-affine][-layer|-axis<k>] or " \
            "cambricon<bits>[-layer|-axis<k>]"
    raise ValueError(text)


# ---------------------------------------------------------------- OneFlow settings

def _code_bytes(values, bits):
    return -(-values * bits // 8)


def oneflow_recipe(formula="google", bits=8, scheme="symmetric", per_channel=True,
                   axis=0, name=None) -> Recipe:
    """The recipe of one setting of OneFlow's ``MinMaxObserver`` + ``fake_quantization``.

    Per channel along ``axis`` (per layer for tensors of fewer than two dimensions, and
    per layer when ``per_channel`` is False); scale and zero point from the min/max
    formulas of :func:`numba_quant.min_max_observer`.

    Examples
    --------
    >>> from numba_quant.reporting.recipes import oneflow_recipe
    >>> oneflow_recipe("google", 4, "affine", per_channel=False).name
    'int4-affine-layer'
    """
    _checks.scheme_code(formula, scheme)
    bits = _checks.bits(bits)
    axis = _checks.integer("axis", axis)
    cambricon = formula == "cambricon"
    if name is None:
        name = f"{'cambricon' if cambricon else 'int'}{bits}"
        if scheme == "affine" and not cambricon:
            name += "-affine"
        if not per_channel:
            name += "-layer"
        elif axis != 0:
            name += f"-axis{axis}"
    layout = (f"one {'shift' if cambricon else 'scale'} per channel along axis {axis}"
              if per_channel else
              f"one {'shift' if cambricon else 'scale'} for the whole tensor")
    what = (f"cambricon {bits}-bit codes (power-of-two steps)" if cambricon else
            f"{bits}-bit {scheme} codes (OneFlow google formula)")
    settings = {"quantization_formula": formula, "quantization_bit": bits,
                "quantization_scheme": "symmetric" if cambricon else scheme,
                "per_layer_quantization": not per_channel, "axis": axis,
                "parameter": "shift" if cambricon else "scale"}
    code_range = (0, 2 ** bits - 1) if scheme == "affine" and not cambricon else \
        (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    settings["code_range"] = list(code_range)
    has_zero_point = scheme == "affine" and not cambricon
    param_bytes = 1 if cambricon else 4 + (_code_bytes(1, bits) if has_zero_point else 0)

    def nbytes(rows, columns, shape=None):
        channels = rows if per_channel else 1
        return int(_code_bytes(rows * columns, bits) + channels * param_bytes)

    def fake_quantize(x, context):
        per_row = per_channel and len(context.shape) >= 2
        if per_row and axis % len(context.shape) != 0:
            return _fake_quantize_axis(x, context, formula, bits, scheme, axis)
        if per_row:
            scale, zero_point = min_max_observer(x, formula, bits, scheme, False, axis=0,
                                                    nonfinite=context.nonfinite)
        else:
            scale, zero_point = _layer_parameters(context, x.dtype, formula, bits, scheme)
        xq = fake_quantization(x, scale, zero_point, formula, bits, scheme, axis=0)
        steps = np.exp2(np.trunc(scale)) if cambricon else scale
        return xq, ClipSteps(np.asarray(steps, np.float64).reshape(-1, 1), x.shape[1], bits)

    return Recipe(name, f"{what}, {layout}", fake_quantize, nbytes,
                  rows_independent=not per_channel or axis == 0, settings=settings)


def _layer_parameters(context, dtype, formula, bits, scheme):
    """Per-layer scale and zero point from the tensor's finite min and max: the
    observer's formulas depend on nothing else."""
    ends = np.array([context.lo, context.hi], dtype=dtype)
    return min_max_observer(ends, formula, bits, scheme)


def _fake_quantize_axis(x, context, formula, bits, scheme, axis):
    """Per channel along an axis other than 0: the whole tensor in its own shape."""
    shaped = x.reshape(context.shape)
    scale, zero_point = min_max_observer(shaped, formula, bits, scheme, False, axis=axis,
                                            nonfinite=context.nonfinite)
    xq = fake_quantization(shaped, scale, zero_point, formula, bits, scheme, axis=axis)
    steps = np.exp2(np.trunc(scale)) if formula == "cambricon" else scale
    moved = [1] * len(context.shape)
    moved[axis] = -1
    half = np.asarray(steps, np.float64).reshape(moved) * _half_step_factor(bits)
    with np.errstate(invalid="ignore"):
        clipped = int(np.count_nonzero(np.abs(shaped.astype(np.float64) - xq) > half))
    return xq.reshape(x.shape), clipped


def _half_step_factor(bits):
    """Half a step plus a margin for float rounding in ``x / scale`` and ``q * scale``
    (relative error about 2**-24 of values up to 2**bits steps)."""
    return 0.5 + 2.0 ** (bits - 20)


# ------------------------------------------------------------------ block-wise int

def _groupwise_recipe(name, bits, group, scheme="affine"):
    """Codes with one scale (and zero point) per group of ``group`` values of a row, by
    the block-wise OneFlow functions (``block_size=(1, group)``)."""
    has_zero_point = scheme == "affine"

    def nbytes(rows, columns, shape=None):
        groups = rows * -(-columns // group)
        return int(_code_bytes(rows * columns, bits)
                   + groups * (4 + (_code_bytes(1, bits) if has_zero_point else 0)))

    def fake_quantize(x, context):
        # One block of ``group`` values along each row (the whole row when it is
        # shorter, a shorter last block when the row length is not a multiple): the
        # block-wise OneFlow observer and map, the formulas of a per-layer call applied
        # to each block.
        block = (1, min(group, x.shape[1]))
        scale, zero_point = min_max_observer(x, "google", bits, scheme, block_size=block,
                                                nonfinite=context.nonfinite)
        xq = fake_quantization(x, scale, zero_point, "google", bits, scheme,
                                  block_size=block)
        return xq, ClipSteps(np.asarray(scale, np.float64), group, bits)

    return Recipe(name, f"{bits}-bit {scheme} codes, one scale"
                        f"{' and zero point' if has_zero_point else ''} per group of "
                        f"{group} values along each row", fake_quantize, nbytes,
                  rows_independent=True,
                  settings={"quantization_formula": "google", "quantization_bit": bits,
                            "quantization_scheme": scheme, "group_size": group,
                            "parameter": "scale"})


register(oneflow_recipe("google", 8, "symmetric", per_channel=True))
register(oneflow_recipe("google", 8, "symmetric", per_channel=False))
register(_groupwise_recipe("int4-g128", 4, 128))


# ------------------------------------------------------------------ float formats

# A value is clipped when, scaled into the element range, it lies more than half a step
# beyond the largest element (448, 57344, 6): rounding alone would not bring it there.
_ELEMENT_CLIP = {"float8_e4m3fn": 448.0 + 16.0, "float8_e5m2": 57344.0 + 4096.0,
                 "float4_e2m1fn": 6.0 + 1.0}
_ELEMENT_BITS = {"float8_e4m3fn": 8, "float8_e5m2": 8, "float4_e2m1fn": 4}


def _format_input(x, context):
    """The chunk as the float formats take it: float32 (they compute in float32 and
    refuse float64), non-finite values (present only under nonfinite="omit") as 0."""
    x = x.astype(np.float32, copy=False)
    if context.nonfinite == "omit" and not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, np.float32(0))
    return x


def _float_bits_as_uint8(a):
    a = np.asarray(a)
    return a.view(np.uint8) if a.dtype.itemsize == 1 else a.astype(np.uint8)


def _count_beyond(x, multiplier_per_block, block, limit):
    """Clipped values: ``|x| * multiplier > limit`` in float32, the arithmetic the formats
    use to scale a value into the element range (the multiplier of each block of
    ``block`` values along a row)."""
    rows, columns = x.shape
    m = np.asarray(multiplier_per_block, np.float32).reshape(rows, -1)
    m = np.repeat(m, block, axis=1)[:, :columns]
    with np.errstate(invalid="ignore", over="ignore"):
        return int(np.count_nonzero(np.abs(x) * m > np.float32(limit)))


def _fp8_recipe():
    def nbytes(rows, columns, shape=None):
        return int(rows * columns + rows * 4)

    def fake_quantize(x, context):
        dtype = x.dtype
        x = _format_input(x, context)
        per_layer = len(context.shape) < 2
        elements, scale = to_float8(x, "float8_e4m3fn", per_layer_quantization=per_layer,
                                       axis=0)
        xq = np.asarray(from_float8(elements, scale, "float8_e4m3fn", axis=0))
        scale = np.asarray(scale, np.float32).reshape(-1, 1)
        return xq.astype(dtype, copy=False), _count_beyond(x, scale, x.shape[1],
                                                           _ELEMENT_CLIP["float8_e4m3fn"])

    return Recipe("fp8", "FP8 E4M3 elements, one float32 scale per output channel "
                         "(amax / 448)", fake_quantize, nbytes,
                  settings={"element": "float8_e4m3fn", "parameter": "scale"})


def _mx_recipe(name, element):
    block = 32
    bits = _ELEMENT_BITS[element]

    def nbytes(rows, columns, shape=None):
        return int(_code_bytes(rows * columns, bits) + rows * -(-columns // block))

    def fake_quantize(x, context):
        dtype = x.dtype
        x = _format_input(x, context)
        scale, elements = to_mx(x, element, block)
        xq = np.asarray(from_mx(scale, elements, element, block))
        exponent = 127.0 - _float_bits_as_uint8(scale).astype(np.float64)
        return xq.astype(dtype, copy=False), _count_beyond(x, np.exp2(exponent), block,
                                                           _ELEMENT_CLIP[element])

    return Recipe(name, f"OCP MX: {element} elements, one E8M0 (power-of-two) scale per "
                        f"block of {block} values along each row", fake_quantize, nbytes,
                  settings={"element": element, "block_size": block,
                            "parameter": "e8m0 scale"})


def _nvfp4_recipe():
    block = 16

    def nbytes(rows, columns, shape=None):
        return int(_code_bytes(rows * columns, 4) + rows * -(-columns // block) + 4)

    def fake_quantize(x, context):
        dtype = x.dtype
        x = _format_input(x, context)
        # The per-tensor scale comes from the whole tensor's amax, not this chunk's: the
        # same formula, applied by to_nvfp4 to the tensor's largest magnitude.
        amax = np.float32(max(abs(context.lo), abs(context.hi)))
        per_tensor = to_nvfp4(np.array([amax], np.float32))[2]
        block_scale, elements, per_tensor = to_nvfp4(x, per_tensor)
        xq = np.asarray(from_nvfp4(block_scale, elements, per_tensor))
        scales = fp8_to_float32(_float_bits_as_uint8(block_scale), "float8_e4m3fn")
        inverse = np.float32(1) / np.float32(per_tensor)
        with np.errstate(divide="ignore"):
            multiplier = inverse / scales
        return xq.astype(dtype, copy=False), _count_beyond(x, multiplier, block,
                                                           _ELEMENT_CLIP["float4_e2m1fn"])

    return Recipe("nvfp4", "NVFP4: FP4 E2M1 elements, an FP8 E4M3 scale per block of 16 "
                           "values along each row and a float32 scale per tensor",
                  fake_quantize, nbytes,
                  settings={"element": "float4_e2m1fn", "block_size": block,
                            "parameter": "e4m3 block scale and float32 tensor scale"})


register(_fp8_recipe())
register(_mx_recipe("mxfp8", "float8_e4m3fn"))
register(_mx_recipe("mxfp4", "float4_e2m1fn"))
register(_nvfp4_recipe())
for _name in GGUF_RECIPES:
    register(gguf_recipe(_name))
