"""Compare numba_quant's GGUF quantizers with ggml's own C library on random rows.

ggml's C comes from the PyPI package ``libggml-python==0.20.2.post1`` (the library that
made tests/data/ggml_quants.npz), installed in a separate virtual environment; only its
``libggml-base.so`` is loaded here, through ctypes, so this script runs under the
project's Python::

    python -m venv /work/venv-gguf
    /work/venv-gguf/bin/pip install numpy libggml-python==0.20.2.post1 gguf
    python tools/check_gguf_c.py                      # every type, with/without imatrix
    python tools/check_gguf_c.py Q4_K Q6_K --rows 400
    python tools/check_gguf_c.py --bench              # single-thread (256, 4096) timing
    GGML_BASE_LIB=/path/to/libggml-base.so python tools/check_gguf_c.py

For each type it draws rows of several kinds (normal, heavy-tailed with an outlier,
all positive, tiny and huge magnitudes, many zeros, quarter steps), quantizes them with
``ggml_quantize_chunk`` and with numba_quant, and compares the bytes; then it compares
the type's ``to_float`` of those bytes with numba_quant's dequantization, bit for bit.
"""
import argparse
import ctypes
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GGML_IDS = {"F16": 1, "BF16": 30, "Q8_0": 8, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7,
            "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20,
            "IQ4_XS": 23, "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39}
IGNORES_IMATRIX = {"F16", "BF16", "Q8_0", "MXFP4", "TQ1_0", "TQ2_0"}
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


# --------------------------------------------------------------------------- ggml's C
class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits of ggml 0.20 (ggml.h); checked against ggml_row_size below.
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class GGML:
    """ggml's quantizers and ``to_float`` functions, called through ctypes."""

    def __init__(self, path=None):
        path = path or os.environ.get("GGML_BASE_LIB") or _find_lib()
        self.lib = lib = ctypes.CDLL(path)
        self.path = path
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.c_void_p]
        lib.ggml_row_size.restype = ctypes.c_size_t
        lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]

    def row_size(self, name, n_per_row):
        return self.lib.ggml_row_size(GGML_IDS[name], n_per_row)

    def quantize(self, name, x, imatrix=None):
        """``ggml_quantize_chunk`` of the float32 rows ``x``: uint8 ``(rows, row_size)``."""
        x = np.ascontiguousarray(x, np.float32)
        rows, n = x.shape
        out = np.zeros((rows, self.row_size(name, n)), np.uint8)
        qw = None if imatrix is None else np.ascontiguousarray(imatrix, np.float32)
        self.lib.ggml_quantize_chunk(GGML_IDS[name], x.ctypes.data, out.ctypes.data, 0, rows,
                                     n, None if qw is None else qw.ctypes.data)
        return out

    def dequantize(self, name, data, n_per_row):
        """The type's ``to_float`` applied row by row: float32 ``(rows, n_per_row)``."""
        traits = self.lib.ggml_get_type_traits(GGML_IDS[name]).contents
        if traits.type_size * n_per_row // traits.blck_size != self.row_size(name, n_per_row):
            raise RuntimeError("ggml_type_traits layout differs from this script's")
        fn = _TO_FLOAT(traits.to_float)
        data = np.ascontiguousarray(data, np.uint8)
        out = np.zeros((data.shape[0], n_per_row), np.float32)
        for r in range(data.shape[0]):
            fn(data[r].ctypes.data, out[r].ctypes.data, n_per_row)
        return out


def _find_lib():
    hits = sorted(glob.glob("/work/venv-gguf/lib/python3*/site-packages/libggml/lib64/"
                            "libggml-base.so"))
    if not hits:
        sys.exit("libggml-base.so not found: install libggml-python==0.20.2.post1 in "
                 "/work/venv-gguf or set GGML_BASE_LIB")
    return hits[0]


# --------------------------------------------------------------------------- ours
def _public_gguf():
    try:
        from numba_quant import gguf
    except ImportError:
        return None
    return gguf


def _k_rows():
    # The K-quant row functions, driven one row at a time (before numba_quant.gguf
    # handles them).
    from numba import njit

    from numba_quant._reference import gguf_kquants as kq

    @njit
    def run_quantize(fn, x, qw, has_qw, out):
        fs = np.zeros(2048, np.float32)
        iscr = np.zeros(2048, np.int32)
        for r in range(x.shape[0]):
            fn(x[r], qw, has_qw, out[r], fs, iscr)

    @njit
    def run_dequantize(fn, data, out):
        for r in range(data.shape[0]):
            fn(data[r], out[r])

    table = {t: (getattr(kq, "quantize_row_" + t.lower()),
                 getattr(kq, "dequantize_row_" + t.lower())) for t in K_QUANTS}
    return table, run_quantize, run_dequantize


class Ours:
    """numba_quant's quantize/dequantize: the public module where it handles the type,
    else (K-quants) the reference row functions."""

    def __init__(self, ggml):
        self.gguf = _public_gguf()
        self.ggml = ggml
        self._k = None
        self._public = {}

    def _uses_public(self, name):
        if name not in self._public:
            self._public[name] = self._try_public(name)
        return self._public[name]

    def _try_public(self, name):
        if self.gguf is None:
            return False
        try:
            self.gguf.quantize(np.zeros((1, 256), np.float32), name)
        except (NotImplementedError, KeyError):
            return False
        except ValueError as e:
            return "not implemented" not in str(e).lower()
        return True

    def quantize(self, name, x, imatrix=None):
        if self._uses_public(name):
            return self.gguf.quantize(x, name, imatrix=imatrix)
        if name not in K_QUANTS:
            raise NotImplementedError(name)
        if self._k is None:
            self._k = _k_rows()
        table, run_q, _ = self._k
        out = np.zeros((x.shape[0], self.ggml.row_size(name, x.shape[1])), np.uint8)
        qw = x[0] if imatrix is None else np.ascontiguousarray(imatrix, np.float32)
        run_q(table[name][0], np.ascontiguousarray(x, np.float32), qw, imatrix is not None,
              out)
        return out

    def dequantize(self, name, data, n_per_row):
        if self._uses_public(name):
            return self.gguf.dequantize(data, name)
        if self._k is None:
            self._k = _k_rows()
        table, _, run_d = self._k
        out = np.zeros((data.shape[0], n_per_row), np.float32)
        run_d(table[name][1], np.ascontiguousarray(data), out)
        return out


# --------------------------------------------------------------------------- inputs
def random_rows(rng, rows, n, kind):
    """float32 ``(rows, n)`` of one kind of random input."""
    x = rng.standard_normal((rows, n))
    if kind == "heavy":
        x *= rng.lognormal(0.0, 2.5, (rows, 1))
        x[np.arange(rows), rng.integers(0, n, rows)] *= 30.0
    elif kind == "positive":
        x = np.abs(x) + 0.25
    elif kind == "negative":
        x = -np.abs(x)
    elif kind == "tiny":
        x *= 10.0 ** rng.uniform(-30, -5, (rows, 1))
    elif kind == "huge":
        x *= 10.0 ** rng.uniform(2, 4, (rows, 1))
    elif kind == "sparse":
        x *= rng.random((rows, n)) < 0.2
    elif kind == "sparse_negative":
        # Sub-blocks whose maximum is 0: ggml's searches divide by max - min = 0.
        x = -np.abs(x) * (rng.random((rows, n)) < 0.2)
    elif kind == "quarters":
        x = np.round(x * 4.0) / 4.0
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, (rows, n)) * rng.lognormal(0.0, 1.0, (rows, 1))
    elif kind == "blocks":
        # Each 32-value block on its own scale, some blocks constant or zero.
        x *= rng.lognormal(0.0, 2.0, (rows, n // 32, 1)).repeat(32, 1).reshape(rows, n)
        x[:, 64:96] = 0.5
        x[:, 128:160] = 0.0
    return x.astype(np.float32)


KINDS = ("normal", "heavy", "positive", "negative", "tiny", "huge", "sparse",
         "sparse_negative", "quarters", "uniform", "blocks")


def random_imatrix(rng, n):
    w = rng.lognormal(0.0, 1.5, n)
    w[rng.random(n) < 0.02] = 0.0
    return w.astype(np.float32)


# --------------------------------------------------------------------------- checks
def check(ggml, ours, name, rows, seed):
    rng = np.random.default_rng(seed)
    failures = 0
    total = 0
    for with_imatrix in (False, True):
        if with_imatrix and name in IGNORES_IMATRIX:
            continue
        for kind in KINDS:
            n = int(rng.choice([256, 512, 1024, 2048]))
            nrows = max(1, rows // len(KINDS))
            x = random_rows(rng, nrows, n, kind)
            qw = random_imatrix(rng, n) if with_imatrix else None
            want = ggml.quantize(name, x, qw)
            dw = ggml.dequantize(name, want, n)
            # A row whose scale overflows float16 is refused (ggml stores an infinity):
            # such rows are checked one by one and must be ones that ggml dequantizes to
            # non-finite values; the others must have ggml's bytes.
            refused = np.zeros(nrows, bool)
            try:
                got = ours.quantize(name, x, qw)
            except ValueError:
                got = want.copy()
                for r in range(nrows):
                    try:
                        got[r] = ours.quantize(name, x[r:r + 1], qw)[0]
                    except ValueError:
                        refused[r] = True
            bad_rows = np.nonzero((want != got).any(axis=1) & ~refused)[0]
            wrongly_refused = np.nonzero(refused & np.isfinite(dw).all(axis=1))[0]
            dg = ours.dequantize(name, want, n)
            bad_deq = np.nonzero((dw.view(np.uint32) != dg.view(np.uint32)).any(axis=1))[0]
            total += nrows
            if bad_rows.size or bad_deq.size or wrongly_refused.size:
                failures += 1
                print(f"  {name} {kind} imatrix={with_imatrix} n={n}: {bad_rows.size} rows "
                      f"with other bytes (first {bad_rows[:5]}), {bad_deq.size} rows with "
                      f"other dequantized bits, {wrongly_refused.size} finite rows refused")
    return failures, total


def bench(ggml, ours, name, with_imatrix, repeats=3):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((256, 4096)).astype(np.float32)
    qw = random_imatrix(rng, 4096) if with_imatrix else None
    ours.quantize(name, x[:2], qw)  # compile
    t_c = min(_timed(lambda: ggml.quantize(name, x, qw)) for _ in range(repeats))
    t_o = min(_timed(lambda: ours.quantize(name, x, qw)) for _ in range(repeats))
    same = np.array_equal(ggml.quantize(name, x, qw), ours.quantize(name, x, qw))
    return t_c, t_o, same


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", help="type names (default: all that numba_quant has)")
    ap.add_argument("--rows", type=int, default=300, help="random rows per type and mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", action="store_true",
                    help="time one thread on a (256, 4096) float32 array instead")
    args = ap.parse_args()
    ggml = GGML()
    ours = Ours(ggml)
    names = args.types or [t for t in GGML_IDS if t in K_QUANTS or ours._uses_public(t)]
    print(f"ggml: {ggml.path}")
    if args.bench:
        import numba
        numba.set_num_threads(1)
        print(f"{'type':8} {'imatrix':8} {'ggml C ms':>10} {'ours ms':>9} {'ratio':>6} same")
        for name in names:
            for with_imatrix in (False, True):
                if with_imatrix and name in IGNORES_IMATRIX:
                    continue
                t_c, t_o, same = bench(ggml, ours, name, with_imatrix)
                print(f"{name:8} {str(with_imatrix):8} {1e3 * t_c:10.1f} {1e3 * t_o:9.1f} "
                      f"{t_o / t_c:6.2f} {same}")
        return 0
    bad = 0
    for i, name in enumerate(names):
        failures, total = check(ggml, ours, name, args.rows, args.seed + i)
        print(f"{name}: {total} random rows, {'OK' if not failures else 'FAILED'}")
        bad += failures
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
