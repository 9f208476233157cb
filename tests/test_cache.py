"""The on-disk kernel cache hands back only the machine code of the signature asked for.

Two processes that compile two signatures of one kernel at the same moment could, with
Numba's own file naming, leave one signature's index entry pointing at the other's code
(``numba_quant/_host/cache.py``).  Here two cached signatures have their data
files swapped, as such a race leaves them; a fresh process must still compute the right
answers (by compiling again), not run float64 code on float32 arrays.
"""
import os
import subprocess
import sys
from pathlib import Path

import numba_quant

ROOT = str(Path(numba_quant.__file__).resolve().parent.parent)

# count_nonfinite: a small serial kernel, compiled once per dtype.
SCRIPT = """
import numpy as np
from numba_quant._cpu import kernels as _cpu_kernels
for dtype, bad in ((np.float32, 3), (np.float64, 5)):
    x = np.zeros((2, 3, 7), dtype)
    x.reshape(-1)[:bad] = np.nan
    print(dtype.__name__, _cpu_kernels.count_nonfinite(x, True))
"""
EXPECTED = "float32 3\nfloat64 5\n"


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_DISABLE_JIT", None)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300)


def test_an_entry_holding_another_signatures_code_is_compiled_again(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == EXPECTED
    files = sorted(tmp_path.rglob("_cpu_kernels.count_nonfinite-*.nbc"))
    assert len(files) == 2, files  # one per dtype
    a, b = (f.read_bytes() for f in files)
    assert a != b
    files[0].write_bytes(b)
    files[1].write_bytes(a)
    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == EXPECTED
    # Both entries were compiled again and written back to their own files.
    assert files[0].read_bytes() != b and files[1].read_bytes() != a


# A kernel's cache entry is keyed on every module of the private subpackages: an edit
# to any of them (here the shared reference, which the kernels inline) must compile the
# kernel again in the next process, and no edit must load it from the cache.
STATS = """
import numpy as np
from numba_quant._cpu import kernels
kernel = getattr(kernels.count_nonfinite, "dispatcher", kernels.count_nonfinite)
x = np.zeros((2, 3, 7), np.float32)
kernels.count_nonfinite(x, True)
print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
"""


def test_an_edit_to_a_subpackage_module_compiles_again(tmp_path):
    import shutil
    copy = tmp_path / "src"
    shutil.copytree(Path(numba_quant.__file__).parent, copy / "numba_quant",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(copy))
    env.pop("NUMBA_DISABLE_JIT", None)

    def hits_and_misses():
        done = subprocess.run([sys.executable, "-c", STATS], capture_output=True,
                              text=True, env=env, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return tuple(int(v) for v in done.stdout.split()[-2:])

    assert hits_and_misses() == (0, 1)      # compiled, written to the cache
    assert hits_and_misses() == (1, 0)      # loaded from the cache
    edited = copy / "numba_quant" / "_reference" / "integer.py"
    edited.write_text(edited.read_text() + "\n# an edit\n")
    assert hits_and_misses() == (0, 1)      # the edit invalidated the entry
