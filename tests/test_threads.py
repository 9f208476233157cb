"""Calls from several Python threads at once give the same results as one at a time.

Under Numba's fallback threading layer (workqueue), two threads entering parallel code
at once abort the process.  Every parallel kernel of the CPU backend is therefore made
by ``numba_quant._cpu.threads.parallel_njit``, which holds one lock around each call.
The tests here check that no parallel kernel escapes that guard, and run every public
function from 16 threads at once under the workqueue layer and under Numba's default
layer, each in a subprocess of its own (an abort fails the test instead of killing
pytest), comparing each thread's result bits with a call made on one thread.

Run this file as a script to start such a worker by hand::

    NUMBA_THREADING_LAYER=workqueue PYTHONPATH=.:tests python tests/test_threads.py
"""
import gc
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_THREADS = 16
# Distinct inputs: thread k works on input k % N_INPUTS.
N_INPUTS = 2
# Calls of each function per thread, started together behind a barrier.
ROUNDS = 1
LAYERS = ("workqueue", "default")


# ------------------------------------------------------------------- the guard is there
def unguarded_parallel_kernels():
    """Names of the package's Numba dispatchers compiled with ``parallel=True`` that can
    be called without the lock: ones that no ``threads.Guarded`` holds, and ones that a
    module of the package keeps (in a global, or in a dict, list or tuple there) other
    than through a ``Guarded``."""
    from numba.core.registry import CPUDispatcher

    from numba_quant._cpu import threads
    from numba_quant._cpu.signatures import Kernel

    def parallel_dispatcher(value):
        return (isinstance(value, CPUDispatcher) and bool(value.targetoptions.get("parallel"))
                and value.py_func.__module__.startswith("numba_quant"))

    def name(dispatcher):
        return f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"

    objects = gc.get_objects()
    guarded = {id(g.dispatcher) for g in objects if type(g) is threads.Guarded}
    found = {name(d) for d in objects if parallel_dispatcher(d) and id(d) not in guarded}

    def walk(value, where, depth):
        if type(value) is threads.Guarded:
            return
        if isinstance(value, Kernel):
            value = value.dispatcher
        if parallel_dispatcher(value):
            found.add(f"{where} ({name(value)})")
        elif depth < 3 and isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}[{key!r}]", depth + 1)
        elif depth < 3 and isinstance(value, (list, tuple)):
            for k, item in enumerate(value):
                walk(item, f"{where}[{k}]", depth + 1)

    for module_name, module in list(sys.modules.items()):
        if module_name == "numba_quant" or module_name.startswith("numba_quant."):
            for attr, value in list(vars(module).items()):
                walk(value, f"{module_name}.{attr}", 0)
    return sorted(found)


def _import_package():
    """Import every module of the package (``__main__`` and optional-dependency ones
    that do not import aside)."""
    import importlib
    import pkgutil

    import numba_quant

    for info in pkgutil.walk_packages(numba_quant.__path__, "numba_quant."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass


def _module(name):
    """The module itself (the route recorder of conftest.py may stand in for
    ``numba_quant._cpu.kernels`` as an attribute of the backend modules)."""
    import importlib

    return importlib.import_module(name)


def test_every_parallel_kernel_is_guarded():
    _import_package()
    kernels = _module("numba_quant._cpu.kernels")
    layer = _module("numba_quant._cpu.layer")
    threads = _module("numba_quant._cpu.threads")

    # The scan finds the kernels at all (the guarded ones it passes).
    assert type(kernels.qparams[True]) is threads.Guarded
    assert type(layer.reduce[False]) is threads.Guarded
    assert unguarded_parallel_kernels() == []


def test_the_scan_finds_an_unguarded_parallel_kernel():
    import numba

    kernels = _module("numba_quant._cpu.kernels")
    # A raw parallel dispatcher, as a module of the package would hold one.
    raw = kernels.qparams[True].kernel
    kernels._unguarded_for_test = raw
    try:
        found = unguarded_parallel_kernels()
    finally:
        del kernels._unguarded_for_test
    assert any("_unguarded_for_test" in f for f in found), found
    # A parallel dispatcher made outside parallel_njit, held by no Guarded.
    def probe(x):
        return x

    probe.__module__ = "numba_quant.probe_for_test"
    loose = numba.njit(parallel=True)(probe)
    assert "numba_quant.probe_for_test." + probe.__qualname__ in unguarded_parallel_kernels()
    del loose
    gc.collect()


def test_guarded_kernel_holds_the_lock():
    kernels = _module("numba_quant._cpu.kernels")
    threads = _module("numba_quant._cpu.threads")
    seen = []

    def probe(*args):
        seen.append((threads.LOCK._is_owned(), args))
        return len(args)

    guarded = threads.Guarded(probe, kernels.qparams[True].dispatcher)
    assert not threads.LOCK._is_owned()
    assert guarded(1, 2) == 2
    assert seen == [(True, (1, 2))]
    assert not threads.LOCK._is_owned()


# ------------------------------------------------------------- every function, threaded
def _bits(value):
    """A comparable form of a result that keeps every bit of its numbers."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        return ("array", a.dtype.str, a.shape, a.tobytes())
    if isinstance(value, (tuple, list)):
        return tuple(_bits(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _bits(v)) for k, v in sorted(value.items()))
    if isinstance(value, float):
        return ("float", value.hex())
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"no bits for a {type(value).__name__}")


def _shrink_thresholds():
    """Thresholds that send the (64, 512) inputs down the parallel kernels (and the
    range selection onto threads); none changes a result."""
    import routes

    from numba_quant._host import tuning

    for name, value in routes.SHRUNK.items():
        setattr(tuning, name, value)
    tuning.FLOAT_TASK = 1024
    tuning.SELECTION_WORK = 0


def _cases(nq, k):
    """``{name: function()}``: every public function on input ``k``, with the parameters
    it needs computed here, on one thread."""
    from numba_quant import gguf

    rng = np.random.default_rng(1000 + k)
    x = rng.standard_normal((64, 512), dtype=np.float32) * np.float32(k + 1)
    x2 = rng.standard_normal((64, 512), dtype=np.float32)
    xn = x.copy()
    xn[3, 7] = np.nan
    xn[40, 100] = np.inf
    narrow = x.reshape(-1, 16)  # 16 channels along axis 1: the short-period kernels

    s_l, z_l = nq.min_max_observer(x)
    s_c, z_c = nq.min_max_observer(x, "google", 8, "affine", False, axis=0)
    q_c = nq.quantize(x, s_c, z_c, quantization_scheme="affine", axis=0)
    q_l = nq.quantize(x, s_l, z_l)
    s_n, z_n = nq.min_max_observer(narrow, "google", 8, "symmetric", False, axis=1)
    a_s, a_z = nq.choose_qparams_affine(x, "asymmetric", (1, 32), "uint4")
    a_q = nq.quantize_affine(x, (1, 32), a_s, a_z, "uint4")
    f8 = nq.to_bits(x, "float8_e4m3fn", saturate=True)
    f8_q, f8_s = nq.to_float8(x, per_layer_quantization=False)
    mx_s, mx_e = nq.to_mx(x, "float4_e2m1fn")
    nv_s, nv_e, nv_p = nq.to_nvfp4(x)
    observer = nq.HistogramObserver(bins=512, per_layer_quantization=False)
    observer(x)
    counts = observer.counts[:, observer.counts.shape[1] // 2:]
    counts = counts + np.arange(counts.shape[1]) % 3  # every row with counts
    edges = np.tile(np.linspace(0, 4, counts.shape[1] + 1, dtype=np.float32), (64, 1))
    nibbles = (np.abs(x) * 4).astype(np.uint8) % 16

    def moving_function():
        moving_max = np.zeros(1, np.float32)
        moving_min = np.zeros(1, np.float32)
        steps = [nq.moving_average_min_max_observer(b, step, moving_max, moving_min, True,
                                                    10, momentum=0.5)
                 for step, b in enumerate((x, x2, x))]
        return steps, moving_max, moving_min

    def moving_class():
        o = nq.MovingAverageMinMaxObserver(10, "google", 8, "affine",
                                           per_layer_quantization=False)
        return [o(x), o(x2), o.eval()(x)], o.state_dict()

    def histogram(**settings):
        def run():
            o = nq.HistogramObserver(bins=512, **settings)
            first = o(x)
            return first, o(x2), o.range(), o.counts
        return run

    def report():
        r = nq.report({"w": x}, recipes=["int8", "nvfp4"], histograms=1)
        return ([t.to_dict() for t in r.tensors], r.errors,
                {key: list(v) for key, v in r.histograms.items()})

    return {
        "min_max_observer": lambda: nq.min_max_observer(x),
        "min_max_observer affine axis 0": lambda: nq.min_max_observer(
            x, "google", 8, "affine", False, axis=0),
        "min_max_observer axis 1": lambda: nq.min_max_observer(
            x, "cambricon", 8, "symmetric", False, axis=1),
        "min_max_observer omit": lambda: nq.min_max_observer(xn, nonfinite="omit"),
        "min_max_observer omit axis 1": lambda: nq.min_max_observer(
            xn.reshape(-1, 16), "google", 8, "symmetric", False, axis=1, nonfinite="omit"),
        "min_max_observer blocks": lambda: nq.min_max_observer(x, block_size=(4, 64)),
        "MinMaxObserver": lambda: nq.MinMaxObserver(per_layer_quantization=False)(x2),
        "moving_average_min_max_observer": moving_function,
        "MovingAverageMinMaxObserver": moving_class,
        "fake_quantization": lambda: nq.fake_quantization(x, s_l, z_l),
        "fake_quantization axis 0": lambda: nq.fake_quantization(
            x, s_c, z_c, quantization_scheme="affine", axis=0),
        "FakeQuantization axis 1": lambda: nq.FakeQuantization(axis=1)(
            x, np.full(512, 0.05, np.float32), np.zeros(512, np.float32)),
        "fake_quantization axis 1": lambda: nq.fake_quantization(narrow, s_n, z_n, axis=1),
        "quantization": lambda: nq.quantization(x, s_l, z_l),
        "quantization axis 1": lambda: nq.quantization(narrow, s_n, z_n, axis=1),
        "Quantization axis 0": lambda: nq.Quantization(quantization_scheme="affine", axis=0)(
            x, s_c, z_c),
        "quantize": lambda: nq.quantize(x, s_c, z_c, quantization_scheme="affine", axis=0),
        "dequantize": lambda: nq.dequantize(q_l, s_l, z_l),
        "dequantize axis 0": lambda: nq.dequantize(q_c, s_c, z_c, quantization_scheme="affine",
                                                   axis=0),
        "dequantize axis 1": lambda: nq.dequantize(nq.quantize(narrow, s_n, z_n, axis=1),
                                                   s_n, z_n, axis=1),
        "choose_qparams_affine": lambda: nq.choose_qparams_affine(
            x, "asymmetric", (1, 32), "uint4"),
        "quantize_affine": lambda: nq.quantize_affine(x, (1, 32), a_s, a_z, "uint4"),
        "dequantize_affine": lambda: nq.dequantize_affine(a_q, (1, 32), a_s, a_z, "uint4"),
        "choose_qparams_and_quantize_affine": lambda: nq.choose_qparams_and_quantize_affine(
            x, "symmetric", (1, 64), "int8"),
        "to_bits": lambda: nq.to_bits(x, "float8_e4m3fn", saturate=True),
        "to_bits packed": lambda: nq.to_bits(x, "float4_e2m1fn", saturate=True, packed=True),
        "from_bits": lambda: nq.from_bits(f8, "float8_e4m3fn"),
        "to_float8": lambda: nq.to_float8(x),
        "to_float8 axis 0": lambda: nq.to_float8(x, "float8_e5m2",
                                                 per_layer_quantization=False),
        "to_float8 blocks": lambda: nq.to_float8(x, block_size=128),
        "from_float8": lambda: nq.from_float8(f8_q, f8_s),
        "to_mx": lambda: nq.to_mx(x, "float8_e4m3fn"),
        "to_mx fp4": lambda: nq.to_mx(x, "float4_e2m1fn"),
        "from_mx": lambda: nq.from_mx(mx_s, mx_e, "float4_e2m1fn"),
        "mx_fake_quantize": lambda: nq.mx_fake_quantize(x, "float6_e2m3fn"),
        "to_nvfp4": lambda: nq.to_nvfp4(x),
        "from_nvfp4": lambda: nq.from_nvfp4(nv_s, nv_e, nv_p),
        "nvfp4_fake_quantize": lambda: nq.nvfp4_fake_quantize(x),
        "HistogramObserver": histogram(),
        "HistogramObserver axis 0 affine": histogram(
            per_layer_quantization=False, quantization_scheme="affine"),
        "HistogramObserver entropy": histogram(method="entropy"),
        "HistogramObserver blocks": histogram(block_size=(16, 256), method="mse"),
        "compute_amax percentile": lambda: nq.compute_amax(counts, edges, "percentile"),
        "compute_amax entropy": lambda: nq.compute_amax(counts, edges, "entropy"),
        "compute_amax mse": lambda: nq.compute_amax(counts, edges, "mse"),
        "exact_amax_percentile": lambda: nq.exact_amax_percentile(
            x, 99.9, per_layer_quantization=False),
        "pack_int4": lambda: nq.unpack_int4(nq.pack_int4(nibbles), 512),
        "report": report,
        "gguf Q8_0": lambda: gguf.dequantize(gguf.quantize(x, "Q8_0"), "Q8_0"),
        "gguf Q4_0 imatrix": lambda: gguf.quantize(x, "Q4_0", imatrix=np.abs(x2[0]) + 1),
    }


def _dask_to_mx(nq, x):
    """``to_mx`` of a Dask array computed by Dask's threaded scheduler (many chunks on
    ``N_THREADS`` workers at once)."""
    import dask
    import dask.array as da

    scale, elements = nq.to_mx(da.from_array(x, chunks=(4, 512)), "float8_e4m3fn")
    return dask.compute(scale, elements, scheduler="threads", num_workers=N_THREADS)


def _worker():
    """Run every case from ``N_THREADS`` threads at once; print a JSON summary."""
    import time

    import numba

    import numba_quant as nq

    start = time.perf_counter()
    _shrink_thresholds()

    def say(text):
        print(f"{time.perf_counter() - start:7.2f} s  {text}", file=sys.stderr, flush=True)

    inputs = [_cases(nq, j) for j in range(N_INPUTS)]
    names = list(inputs[0])
    # One thread first: the expected bits (and every kernel compiled before the race).
    expected = [{n: _bits(case[n]()) for n in names} for case in inputs]
    say("expected results computed")

    # Note which parallel kernels the threads enter (the guard itself is unchanged).
    from numba_quant._cpu import threads as cpu_threads

    entered = set()
    guarded_call = cpu_threads.Guarded.__call__

    def noting_call(self, *args):
        entered.add(self.py_func.__code__)
        return guarded_call(self, *args)

    cpu_threads.Guarded.__call__ = noting_call
    mismatches = []
    barrier = threading.Barrier(N_THREADS, timeout=300)

    def run(k):
        for n in names:
            barrier.wait()
            if k == 0:
                say(f"threads: {n}")
            for r in range(ROUNDS):
                try:
                    same = _bits(inputs[k % N_INPUTS][n]()) == expected[k % N_INPUTS][n]
                except Exception as exc:  # noqa: BLE001 - reported with the case
                    mismatches.append(f"{n}, thread {k}: {type(exc).__name__}: {exc}")
                    continue
                if not same:
                    mismatches.append(f"{n}, thread {k}, round {r}: other bits")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    say("dask: to_mx on the threaded scheduler")
    x = np.random.default_rng(5).standard_normal((64, 512), dtype=np.float32)
    single = _bits(nq.to_mx(x, "float8_e4m3fn"))
    dask_runs = 0
    for r in range(ROUNDS):
        if _bits(_dask_to_mx(nq, x)) != single:
            mismatches.append(f"dask to_mx, round {r}: other bits")
        dask_runs += 1

    cpu_threads.Guarded.__call__ = guarded_call
    say("scan for unguarded parallel kernels")
    unguarded = unguarded_parallel_kernels()
    # Every parallel kernel body ran in the threads (variants of one body share it).
    bodies = {g.py_func.__code__ for g in gc.get_objects() if type(g) is cpu_threads.Guarded}
    not_entered = sorted(f"{c.co_filename}:{c.co_name}" for c in bodies - entered)
    say("done")
    print(json.dumps({"layer": numba.threading_layer(),
                      "threads": numba.get_num_threads(),
                      "cases": names,
                      "calls": N_THREADS * ROUNDS * len(names) + dask_runs,
                      "mismatches": mismatches,
                      "unguarded": unguarded,
                      "not_entered": not_entered}))


@pytest.fixture(scope="module")
def workers():
    """One worker subprocess per threading layer, started together."""
    pytest.importorskip("dask")
    started = {}
    for layer in LAYERS:
        env = dict(os.environ)
        env["NUMBA_THREADING_LAYER"] = layer
        env["NUMBA_NUM_THREADS"] = "2"  # parallel routes even on one core
        env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE, env.get("PYTHONPATH", "")])
        started[layer] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("layer", LAYERS)
def test_every_public_function_from_threads(workers, layer):
    try:
        out, err = workers[layer].communicate(timeout=900)
    except subprocess.TimeoutExpired:
        workers[layer].kill()
        out, err = workers[layer].communicate()
        pytest.fail(f"{layer}: the worker hung; its last lines:\n{err[-3000:]}")
    assert workers[layer].returncode == 0, (
        f"{layer}: the worker ended with status {workers[layer].returncode}; "
        f"its last lines:\n{err[-3000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    if layer == "workqueue":
        assert summary["layer"] == "workqueue"
    assert summary["threads"] == 2
    assert len(summary["cases"]) >= 40
    assert summary["mismatches"] == []
    assert summary["unguarded"] == []
    assert summary["not_entered"] == [], "parallel kernels that no case reaches"


def test_observer_and_fake_quantization_from_threads():
    import numba_quant as nq
    import oracle
    from golden import assert_same

    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((64, 4096), dtype=np.float32) * (k + 1) for k in range(4)]

    def work(k):
        x = arrays[k]
        scale, zero_point = nq.min_max_observer(x, per_layer_quantization=False)
        return scale, zero_point, nq.fake_quantization(x, scale, zero_point)

    results = [None] * len(arrays)
    errors = []

    def target(k):
        try:
            results[k] = work(k)
        except BaseException as exc:  # reported below, with the thread's number
            errors.append((k, exc))

    threads = [threading.Thread(target=target, args=(k,)) for k in range(len(arrays))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, (scale, zero_point, fake) in enumerate(results):
        x = arrays[k]
        expected_scale, expected_zero_point = oracle.min_max_observer(
            x, "google", 8, "symmetric", False)
        assert_same(scale, expected_scale, f"thread {k} scale")
        assert_same(zero_point, expected_zero_point, f"thread {k} zero point")
        assert_same(fake, oracle.fake_quantization(x, expected_scale, expected_zero_point),
                    f"thread {k} fake quantization")


if __name__ == "__main__":
    _worker()
