"""Access to the golden file tests/data/oneflow_cases.npz (real OneFlow 0.9.0 output)."""
import json
import os

import numpy as np

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "oneflow_cases.npz")

_DATA = None


def data():
    """All arrays of the golden file, loaded once, as a dict name -> array."""
    global _DATA
    if _DATA is None:
        with np.load(PATH) as f:
            _DATA = {k: f[k] for k in f.files}
    return _DATA


def manifest():
    with np.load(PATH) as f:
        return json.loads(str(f["manifest"]))


CASES = manifest()
MIN_MAX = [c for c in CASES if c["op"] == "min_max_observer"]
USER_SHIFT = [c for c in CASES if c["op"] == "cambricon_user_shift"]
MOVING = [c for c in CASES if c["op"] == "moving_average_min_max_observer"]
assert len(MIN_MAX) + len(USER_SHIFT) + len(MOVING) == len(CASES)


def get(case, name):
    """Output ``name`` of ``case`` or None where the case has none."""
    return data().get(f"{case['id']}/{name}")


def inp(case):
    return data()[case["input"]]


def by_input(cases):
    """Cases grouped by their input, as a list of (input key, [cases])."""
    groups = {}
    for c in cases:
        groups.setdefault(c["input"], []).append(c)
    return sorted(groups.items(), key=lambda kv: int(kv[0].split("/")[1]))


def assert_same(actual, expected, what=""):
    """Equal by value (==), dtype and shape included; a readable message otherwise."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    both_nan = np.isnan(actual) & np.isnan(expected) if actual.dtype.kind == "f" else False
    eq = (actual == expected) | both_nan
    if not np.all(eq):
        bad = np.argwhere(~np.asarray(eq))
        first = tuple(bad[0]) if bad.size else ()
        raise AssertionError(
            f"{what}: {len(bad)} of {actual.size} differ; first at {first}: "
            f"{actual[first]!r} != {expected[first]!r}")
