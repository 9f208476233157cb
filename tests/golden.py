"""Access to the golden files of tests/data; the OneFlow 0.9.0 cases (oneflow_cases.npz)
by name."""
import json
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class GoldenFile:
    """One golden file of tests/data: its ``manifest`` (the list of cases, read at once)
    and its arrays (:meth:`data`, loaded on first use, as a dict name -> array)."""

    def __init__(self, name):
        self.path = os.path.join(DATA_DIR, name)
        with np.load(self.path) as f:
            self.cases = json.loads(str(f["manifest"]))
            self.names = frozenset(f.files)  # without loading the arrays (seconds)
        self._data = None

    def data(self):
        if self._data is None:
            with np.load(self.path) as f:
                self._data = {k: f[k] for k in f.files}
        return self._data

    def arrays(self, names):
        """The arrays ``names`` (a dict name -> array), read alone unless :meth:`data`
        has loaded them all already (which takes seconds for the OneFlow file)."""
        if self._data is not None:
            return {k: self._data[k] for k in names}
        with np.load(self.path) as f:
            return {k: f[k] for k in names}


ONEFLOW = GoldenFile("oneflow_cases.npz")
data = ONEFLOW.data
CASES = ONEFLOW.cases
MIN_MAX = [c for c in CASES if c["op"] == "min_max_observer"]
USER_SHIFT = [c for c in CASES if c["op"] == "cambricon_user_shift"]
MOVING = [c for c in CASES if c["op"] == "moving_average_min_max_observer"]
assert len(MIN_MAX) + len(USER_SHIFT) + len(MOVING) == len(CASES)


def get(case, name):
    """Output ``name`` of ``case`` or None where the case has none."""
    return data().get(f"{case['id']}/{name}")


def has(case, name):
    """Whether ``case`` has an output ``name`` (without loading the file's arrays)."""
    return f"{case['id']}/{name}" in ONEFLOW.names


def inp(case):
    return data()[case["input"]]


def by_input(cases):
    """Cases grouped by their input, as a list of (input key, [cases])."""
    groups = {}
    for c in cases:
        groups.setdefault(c["input"], []).append(c)
    return sorted(groups.items(), key=lambda kv: int(kv[0].split("/")[1]))


def bits(a):
    """The bit patterns of a float array as unsigned integers of the same width."""
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_same(actual, expected, what=""):
    """The same dtype, shape and bits; a readable message otherwise.

    Floats are compared as their bit patterns, so the sign of a zero counts.  Where the
    expected element is NaN the actual one must be a NaN too, of any sign and payload: the
    contract defines NaN-ness only (docs/semantics.md §7.4, §10.3).  Other dtypes compare
    with ``==``.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if actual.dtype.kind == "f":
        eq = (bits(actual) == bits(expected)) | (np.isnan(actual) & np.isnan(expected))
    else:
        eq = actual == expected
    if not np.all(eq):
        bad = np.argwhere(~np.asarray(eq))
        first = tuple(bad[0]) if bad.size else ()
        shown = (f"{actual[first]!r} != {expected[first]!r}" if actual.dtype.kind != "f" else
                 f"{actual[first]!r} (0x{bits(actual)[first]:x}) != "
                 f"{expected[first]!r} (0x{bits(expected)[first]:x})")
        raise AssertionError(f"{what}: {len(bad)} of {actual.size} differ; first at {first}: "
                             f"{shown}")
