"""What a recipe is: :class:`Recipe`, the :class:`TensorContext` it sees and the
:class:`ClipSteps` it may return (re-exported by :mod:`numba_quant.reporting.recipes`,
where the registry is)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["ClipSteps", "Recipe", "TensorContext"]


@dataclass(frozen=True)
class TensorContext:
    """What a recipe may know about the whole tensor while it sees one chunk of rows.

    ``shape``: the tensor's shape; ``lo``/``hi``: its smallest and largest finite
    values; ``nonfinite``: ``"raise"`` or ``"omit"`` (then the chunk may hold NaN/inf,
    which the recipe must not let change the finite values' quantization).
    """
    name: str
    shape: tuple
    lo: float
    hi: float
    nonfinite: str = "raise"


@dataclass(frozen=True)
class Recipe:
    """A named quantization recipe.

    Parameters
    ----------
    name, description : str
    fake_quantize : callable
        ``fake_quantize(x, context)`` with ``x`` a C-contiguous float32 (or float64)
        array of shape ``(rows, columns)`` (a chunk of whole rows of the tensor's 2-D
        view) and ``context`` a :class:`TensorContext`.  Returns the fake-quantized array
        (same shape, a float type), or ``(array, clip)`` where ``clip`` is the number of
        values the recipe clipped, or a :class:`ClipSteps` from which the report counts
        them.
    nbytes : callable
        ``nbytes(rows, columns)``: bytes of the quantized tensor (codes and parameters).
    rows_independent : bool
        True when each row's result depends only on that row and ``context`` (the report
        then feeds large tensors a chunk of rows at a time); False: the whole tensor at
        once.
    settings : dict
        The recipe's settings, as plain values (shown in JSON).
    """
    name: str
    description: str
    fake_quantize: Callable
    nbytes: Callable
    rows_independent: bool = True
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClipSteps:
    """The quantization step of each group of values, from which clipping is counted.

    A value is counted as clipped when it lies more than half a step (with a margin for
    rounding) from its fake-quantized value: rounding alone never moves a value that far,
    clamping to the end codes does.  ``steps`` has shape ``(rows or 1, groups)``; the
    value in column ``c`` belongs to group ``c // group``.
    """
    steps: np.ndarray
    group: int
    bits: int
