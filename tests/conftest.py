"""Test configuration: CUDA simulator when no GPU is usable, devices, Hypothesis profiles.

This file runs before any test module imports numba, so it can still choose the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) when no real GPU can be used.
"""
import ctypes
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the helpers (oracle, golden, ...) work under any import mode
    sys.path.insert(0, HERE)


def _real_gpu_usable():
    """True where the CUDA driver loads, initialises and sees at least one device."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return False
            count = ctypes.c_int(0)
            return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except Exception:  # noqa: BLE001 - any driver trouble means "no GPU"
            return False
    return False


if "numba" not in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM", "") in ("", "0"):
    if not _real_gpu_usable():
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")

# Launch configuration for the simulator: a few threads, two blocks (so that the
# combination of block results is exercised too); each simulated thread costs time.
SIM_LAUNCH = {"threads": 16, "max_blocks": 2}


def _patch_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` allocation thread-safe.

    numba-cuda's simulator (0.30) looks up a block's shared array by the calling source
    line and creates it when missing, without a lock: two simulated threads can both
    create one, and the block's threads then write to different arrays and read
    ``np.empty`` garbage from the other (seen as random counts and min/max keys in the
    kernels' shared-memory reductions, more often with a short GIL switch interval).
    This replacement does the same lookup under a lock.
    """
    import threading

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "_locked", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:   # dynamic shared memory: no lookup
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    array._locked = True
    kernelapi.FakeCUDAShared.array = array


if os.environ.get("NUMBA_DISABLE_JIT", "") not in ("", "0"):
    # With the JIT disabled (the coverage run, tools/coverage.sh) the kernels run as
    # Python; the CPU kernels' LLVM intrinsics (llvm.minimum/maximum) have no Python form,
    # so numpy's NaN-propagating minimum and maximum stand in for them.
    import numpy as np

    from numba_quant._cpu import kernels as _cpu_kernels

    for _name, _stand_in in (("minimum", np.minimum), ("maximum", np.maximum)):
        if type(getattr(_cpu_kernels, _name, None)).__name__ == "_Intrinsic":
            setattr(_cpu_kernels, _name, _stand_in)

if SIMULATOR:
    # The simulator runs each GPU thread as a Python thread that waits on the others at
    # every barrier; with the default 5 ms GIL switch interval most of the wall time is
    # spent waiting for hand-overs. A short interval makes the GPU tests 2-5x faster.
    sys.setswitchinterval(5e-5)
    _patch_simulator_shared_arrays()

# --------------------------------------------------------------------------- Hypothesis
from hypothesis import HealthCheck, settings  # noqa: E402

from profiles import GGUF_DEFAULT_TYPES, PROFILE, THOROUGH  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("thorough", max_examples=400, **_common)
settings.load_profile(PROFILE)


# --------------------------------------------------------------------------- CuPy
def _cupy_usable():
    try:
        import cupy
    except Exception:  # noqa: BLE001 - ImportError or a broken install
        return False
    try:
        if not cupy.cuda.is_available():
            return False
        cupy.zeros(1)  # an allocation is the real test
        return True
    except Exception:  # noqa: BLE001
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "cupy: needs CuPy with a usable GPU")
    config.addinivalue_line("markers", "real_gpu: needs a real GPU (not the CUDA simulator)")
    config.addinivalue_line("markers", "gpu: runs the CUDA kernels (real GPU or simulator)")
    config.addinivalue_line("markers", "cluster: uses a Dask LocalCluster of worker "
                                       "processes (started once per module; slow)")


_CUPY = None


def cupy_usable():
    global _CUPY
    if _CUPY is None:
        _CUPY = (not SIMULATOR) and _cupy_usable()
    return _CUPY


def _runs_on_gpu(item):
    callspec = getattr(item, "callspec", None)
    return ((callspec is not None and callspec.params.get("device") == "gpu")
            or item.get_closest_marker("gpu") is not None)


# tryfirst: pytest-xdist's worker reads the xdist_group marks in its own
# pytest_collection_modifyitems, which pluggy would otherwise call before this one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    skip_cupy = pytest.mark.skip(reason="CuPy not usable: no GPU (cupy.cuda.is_available() "
                                        "is False, or allocation fails)")
    skip_real = pytest.mark.skip(reason="needs a real GPU; running in the CUDA simulator")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "gpu":
            item.add_marker(pytest.mark.gpu)
        if "cupy" in item.keywords and not cupy_usable():
            item.add_marker(skip_cupy)
        if "real_gpu" in item.keywords and SIMULATOR:
            item.add_marker(skip_real)
    kept, dropped = [], []
    for item in items:
        (dropped if _thinned_out(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    _order_for_workers(items)


# --------------------------------------------------------------------------- worker units
# With pytest-xdist (pyproject.toml: -n auto --dist loadgroup --no-loadscope-reorder)
# the tests are handed to the workers in units of work, whole, in the order below (the
# scheduler is pytest_xdist_make_scheduler here: a unit is a function of the test's node
# id, _unit).  Most of the time of a run from an empty Numba cache is compiling kernels,
# so the units decide how often a kernel is compiled twice (by two workers at once, or
# by two workers that each ran half of a module) rather than compiled once and loaded
# from the on-disk cache by the other.
# 0. The route test of each compute dtype, a unit of its own: float32 and float64 kernels
#    are separate signatures, so under the thorough profile the two workers compile every
#    CPU kernel route at the same time, with no signature compiled twice (the default run
#    has the float32 one only: routes.SHRUNK_DTYPES).
# 1. The other suites that compile the CPU kernels for every route, dtype and formula
#    (with more output types and the moving average) form one unit.
# 2. Every other module, a unit each, in collection order.
# 3. Suites that call the same CPU kernels as unit 1 with more layouts, input types and
#    error cases: by the time they start, unit 1 has cached most of what they need.
# 4. Suites that start fresh Python processes (console script, ``python -m``, notebook
#    kernels, Dask workers, threads under each threading layer): each process compiles
#    everything it calls unless the cache already holds it, so they run last, each test
#    a unit of its own (the two workers share the end of the run), except the threads
#    suite (one unit: its two subprocesses are one module fixture).  The tests on a Dask
#    LocalCluster (marked ``cluster``, and named so: _unit reads node ids only) are the
#    exception: one unit, after the module's in-process tests, so that one worker starts
#    one cluster whose processes load the kernels those tests cached.
ROUTE_SUITE = "test_routes.py"
CPU_KERNEL_SUITES = ("test_properties.py", "test_short_runs.py", "test_state.py")
AFTER_CPU_KERNELS = ("test_errors.py", "test_layouts.py", "test_exactness.py",
                     "test_block_size.py", "test_half_inputs.py")
NEW_PROCESS_SUITES = ("test_threads.py", "test_report.py", "test_dask.py", "test_cli.py",
                      "test_notebooks.py")
THREADS_SUITE = "test_threads.py"
CLUSTER_SUITE = "test_dask.py"


def _unit_rank(suite):
    """A unit's place in the order above, for a test of module ``suite``."""
    if suite == ROUTE_SUITE:
        return -1
    if suite in CPU_KERNEL_SUITES:
        return 0
    if suite in AFTER_CPU_KERNELS:
        return 2
    if suite in NEW_PROCESS_SUITES:
        return 3 + NEW_PROCESS_SUITES.index(suite)
    return 1


def _on_cluster(nodeid):
    path, _, name = nodeid.partition("::")
    return os.path.basename(path) == CLUSTER_SUITE and "cluster" in name


def _unit(nodeid):
    """The unit of work of the test ``nodeid`` (see the order above)."""
    path = nodeid.partition("::")[0]
    suite = os.path.basename(path)
    if _on_cluster(nodeid):
        return "dask-cluster"
    if suite == ROUTE_SUITE or (suite in NEW_PROCESS_SUITES and suite != THREADS_SUITE):
        return nodeid
    if suite in CPU_KERNEL_SUITES:
        return "cpu-kernels"
    return path


def _order_for_workers(items):
    for item in items:
        if (item.get_closest_marker("cluster") is not None) != _on_cluster(item.nodeid):
            raise pytest.UsageError(
                f"{item.nodeid}: a test on the Dask cluster is marked 'cluster' and has "
                f"'cluster' in its name (the worker units are made from node ids)")
    # Stable: keeps module order within a rank.  The scheduler hands out the units in
    # the order of their first tests.
    items.sort(key=lambda item: (_unit_rank(_suite(item)), _on_cluster(item.nodeid)))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist controller: the units above for ``--dist loadgroup``.

    (pytest-xdist's own loadgroup reads ``xdist_group`` marks by rewriting node ids in
    the worker, which pytest 9.2 no longer lets a plugin do: every test became a unit of
    its own, and both workers compiled the kernels of every module.)
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _unit(nodeid)

    return UnitScheduling(config, log)


# --------------------------------------------------------------------------- kernel routes
# The property and error suites (and, under the thorough profile, the layout and golden
# suites) run twice: with the tuned thresholds of
# numba_quant._host.tuning, and with routes.SHRUNK ones, under which their small inputs take
# every CPU kernel route (tests/routes.py).  A recorder notes which kernel each call ran;
# after a full run the shrunk suites must have reached every route (pytest_sessionfinish).
import routes  # noqa: E402

# The default run shrinks the property and error suites (together they reach every route,
# and tests/test_routes.py checks each route's results); the thorough profile shrinks the
# layout and golden suites too, which compile many more layout signatures (minutes).
SHRUNK_SUITES = ("test_properties.py", "test_errors.py") + (
    ("test_layouts.py", "test_golden.py") if THOROUGH else ())
# On the GPU path the shrunk profile only changes KEPT_KEYS (fresh key arrays for more
# channels than that); these suites run it there too, the others only on the CPU path.
SHRUNK_ON_GPU = ("test_layouts.py", "test_errors.py")
ROUTES = routes.RECORDER
_FULL_RUN = {}


def _suite(item_or_module):
    return os.path.basename(str(getattr(item_or_module, "__file__", None)
                                or item_or_module.fspath))


def pytest_generate_tests(metafunc):
    if _suite(metafunc.module) in SHRUNK_SUITES:
        if "tuning" not in metafunc.fixturenames:
            metafunc.fixturenames.append("tuning")
        metafunc.parametrize("tuning", ["tuned", "shrunk"], scope="module")


def _tuning_profile(item):
    callspec = getattr(item, "callspec", None)
    return "tuned" if callspec is None else callspec.params.get("tuning", "tuned")


def _gguf_type_of(item):
    """The GGUF type a parametrised GGUF test item runs (None: not one type)."""
    params = getattr(item, "callspec", None) and item.callspec.params or {}
    case = params.get("case")
    if isinstance(case, dict):
        return case.get("type")
    name = params.get("name")
    return name if isinstance(name, str) else None


def _route_dtype(item):
    """The compute dtype of a test parametrised by ``dtype`` (None: not parametrised)."""
    params = getattr(item, "callspec", None) and item.callspec.params or {}
    dtype = params.get("dtype")
    try:
        return None if dtype is None else routes.compute_dtype_name(dtype)
    except TypeError:
        return None


def _thinned_out(item):
    """Items the default run leaves out.

    Always: the shrunk profile of the GPU path outside SHRUNK_ON_GPU (its thresholds are
    CPU ones).  Unless HYPOTHESIS_PROFILE=thorough: float64 under the shrunk thresholds
    and in the route test (routes.SHRUNK_DTYPES); the min_max_observer golden cases
    outside a covering subset (see :func:`_golden_subset`) in the CUDA simulator and in
    the shrunk profile, which both change how the kernels walk an input, not the formulas.
    """
    if _suite(item).startswith("test_gguf"):
        return not THOROUGH and _gguf_type_of(item) not in (None,) + GGUF_DEFAULT_TYPES
    shrunk = _tuning_profile(item) == "shrunk"
    if (shrunk or _suite(item) == ROUTE_SUITE) and _route_dtype(item) not in (
            None,) + routes.SHRUNK_DTYPES:
        return True
    gpu = _runs_on_gpu(item)
    if shrunk and gpu:
        return _suite(item) not in SHRUNK_ON_GPU
    if THOROUGH or _suite(item) != "test_golden.py" or not (shrunk or (gpu and SIMULATOR)):
        return False
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    return (isinstance(case, dict) and case.get("op") == "min_max_observer"
            and case["id"] not in _golden_subset())


_SIM_GOLDEN = None


def _golden_subset():
    """The min_max_observer golden cases run in the simulator and with shrunk thresholds.

    The simulator runs the kernels with the CPU's arithmetic, one Python thread per GPU
    thread (about 140 ms a case); what it can show beyond the CPU path is the kernel plan
    for a shape and the GPU's own code for each formula.  Shrunk thresholds change the
    CPU kernel that walks an input, by its shape and layout.  The subset keeps every
    (input shape, per-layer, dtype), and every (formula, scheme, dtype, per-layer) with
    every input kind and every bit width (80 of the 1977 cases).  The CPU path,
    and a real GPU, run them all.
    """
    global _SIM_GOLDEN
    if _SIM_GOLDEN is None:
        import golden
        facets = (("shape", "per_layer", "dtype"),
                  ("formula", "scheme", "dtype", "per_layer", "input_kind"),
                  ("formula", "scheme", "dtype", "per_layer", "bit"))

        inputs = golden.ONEFLOW.arrays({c["input"] for c in golden.MIN_MAX})
        shapes = {name: a.shape for name, a in inputs.items()}

        def keys(case):
            case = dict(case, shape=shapes[case["input"]])
            return {(k, tuple(case[n] for n in f)) for k, f in enumerate(facets)}

        case_keys = [(c["id"], keys(c)) for c in golden.MIN_MAX]
        left = set().union(*(k for _, k in case_keys))
        chosen = set()
        while left:  # greedy cover, deterministic (first best case in file order)
            best, best_keys = max(case_keys, key=lambda c: len(c[1] & left))
            chosen.add(best)
            left -= best_keys
        _SIM_GOLDEN = chosen
    return _SIM_GOLDEN


@pytest.fixture(scope="session", autouse=True)
def _route_recorder():
    """Record which CPU kernel every call runs (see tests/routes.py)."""
    mp = pytest.MonkeyPatch()
    routes.install(mp, ROUTES)
    yield ROUTES
    mp.undo()


@pytest.fixture
def route_recorder():
    return ROUTES


@pytest.fixture(autouse=True)
def _tuning_thresholds(request):
    """Apply the thresholds of the test's profile (``tuning`` parameter) for its duration."""
    profile = _tuning_profile(request.node)
    if profile == "tuned":
        yield profile
        return
    from numba_quant._host import tuning as _tuning
    mp = pytest.MonkeyPatch()
    for name, value in routes.SHRUNK.items():
        mp.setattr(_tuning, name, value)
    ROUTES.profile = profile
    try:
        yield profile
    finally:
        ROUTES.profile = "tuned"
        mp.undo()


def pytest_collection_finish(session):
    """Note whether this run holds the shrunk suites whole (no -k, -m or --deselect)."""
    opt = session.config.option
    unfiltered = not (getattr(opt, "keyword", "") or getattr(opt, "markexpr", "")
                      or getattr(opt, "deselect", None) or getattr(opt, "lf", False))
    suites = {_suite(i) for i in session.items if _tuning_profile(i) == "shrunk"}
    _FULL_RUN["yes"] = unfiltered and set(SHRUNK_SUITES) <= suites


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # A pytest-xdist worker ran part of the tests: its routes go to the controller,
        # which checks the union (pytest_testnodedown).
        workeroutput["routes"] = [[profile, route, dtype, [list(b) for b in branches]]
                                  for (profile, (route, dtype, branches)) in ROUTES.hits]
        workeroutput["full_run"] = bool(_FULL_RUN.get("yes"))
        return
    if (not _FULL_RUN.get("yes") or exitstatus != 0 or session.config.option.collectonly
            or os.environ.get("NUMBA_DISABLE_JIT", "") not in ("", "0")):
        return
    # The shrunk suites and tests/test_routes.py together (each checks results).
    missing = routes.missing(ROUTES.keys("shrunk") | ROUTES.keys("route-test"),
                             dtypes=routes.SHRUNK_DTYPES)
    if missing:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "kernel routes not reached by the shrunk suites and test_routes.py: " + ", ".join(missing), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: add a finished worker's routes to this process's."""
    output = getattr(node, "workeroutput", None) or {}
    for profile, route, dtype, branches in output.get("routes", ()):
        ROUTES.hits[(profile, (route, dtype, tuple(tuple(b) for b in branches)))] += 1
    if output.get("full_run"):
        _FULL_RUN["yes"] = True


def pytest_terminal_summary(terminalreporter):
    reached = ROUTES.routes("shrunk")
    if reached:
        both = reached | ROUTES.routes("route-test")
        terminalreporter.write_line(
            f"kernel routes reached with shrunk thresholds: {len(reached)} of "
            f"{len(routes.all_routes())} by the shrunk suites, {len(both)} with "
            "test_routes.py")


# --------------------------------------------------------------------------- devices
from devices import DEVICES, Device  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _small_gpu_launch():
    """In the simulator, shrink numba_quant._host.tuning.LAUNCH (threads 16, max_blocks 2)."""
    if not SIMULATOR:
        yield None
        return
    from numba_quant._host import tuning as _tuning
    mp = pytest.MonkeyPatch()
    for k, v in SIM_LAUNCH.items():
        mp.setitem(_tuning.LAUNCH, k, v)
    yield _tuning.LAUNCH
    mp.undo()


@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    """Each test using it runs on the CPU path and on the GPU path."""
    return Device(request.param)
