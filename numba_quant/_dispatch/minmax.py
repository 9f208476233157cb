"""Per-channel (min, max) for the observers, and the errors a reduction's status names.

Shared by :mod:`numba_quant.observer` and :mod:`numba_quant.moving_average`; works with
either backend (``ops``).
"""
from numba_quant._host import checks as _checks
from numba_quant._host import codes
from numba_quant._dispatch import to_host


def observe_minmax(ops, x, axis, omit):
    """Checked per-channel (lo, hi) of a backend array; raises on non-finite trouble."""
    _checks.not_empty(x.shape, axis)
    lo, hi, status = ops.channels.channel_minmax(x, axis, omit)
    raise_for_status(status, ops, x, axis, omit, lo, hi)
    return lo, hi


def raise_for_status(status, ops, x, axis, omit, lo=None, hi=None):
    """Raise the error that a reduction's status names (nothing for OK)."""
    if status == codes.HAS_NONFINITE:
        raise _checks.nonfinite_error(ops.channels.count_nonfinite(x))
    if status == codes.EMPTY_CHANNEL:
        if lo is None:  # (the fused reduction returns no min/max to name the channels)
            lo, hi, _ = ops.channels.channel_minmax(x, axis, omit)
        raise _checks.empty_channel_error(to_host(lo), to_host(hi), axis is None)
