"""Dask arrays against the in-memory calls, for the test files of each function family
(their kernels are compiled there already; only the Dask graphs are new work).

Every result is compared bit for bit (and in shape and dtype, with the lazy array's
promise) under the synchronous scheduler.
"""
import numpy as np
import pytest

# Chunkings that cut blocks: rows of one, and chunks aligned to nothing.
CHUNKINGS = [(1, -1), (5, 25)]


def dask_modules():
    """``(dask, dask.array)``, or the test is skipped without Dask."""
    return pytest.importorskip("dask"), pytest.importorskip("dask.array")


def _bits(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}") if a.dtype.itemsize in \
        (1, 2, 4, 8) else a


def compare(lazy, expected):
    """Compute ``lazy`` (a list of Dask arrays, or values) and compare with ``expected``."""
    dask, da = dask_modules()
    got = dask.compute(*lazy, scheduler="synchronous")
    assert len(got) == len(expected)
    for g, a, e in zip(got, lazy, expected):
        g, e = np.asarray(g), np.asarray(e)
        assert g.dtype == e.dtype and g.shape == e.shape
        if isinstance(a, da.Array):
            assert a.dtype == g.dtype and a.shape == g.shape
        np.testing.assert_array_equal(_bits(g), _bits(e))
