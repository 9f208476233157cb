#!/usr/bin/env bash
# Line coverage of numba_quant, measured with the JIT disabled so that the kernels run as
# Python (the CPU kernels as plain functions, the CUDA kernels in Numba's simulator).
#
#   bash tools/coverage.sh                 (the suite but the notebooks; a few minutes)
#   bash tools/coverage.sh tests/test_errors.py      (part of it)
#
# Extra arguments go to pytest. The report lists the lines not run; docs/testing.md says
# which of them cannot run with the JIT disabled and why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NUMBA_DISABLE_JIT=1 NUMBA_ENABLE_CUDASIM=1
# Left out: the notebooks and the command line run as a subprocess (their own processes,
# not measured, where the JIT-less stand-ins of conftest.py do not apply), and the tests
# that run on the full-size example weights or on 1 MB arrays from four threads, which
# pure-Python kernels under coverage's tracer take many minutes over (the same code runs
# on smaller inputs elsewhere in the suite).
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    args=(--ignore=tests/test_notebooks.py --ignore=tests/test_threads.py
          -k "not (builtin or minilm_example or console_script or python_m or subprocess or without_a_gpu)")
fi
python -m coverage erase
status=0
python -m coverage run -m pytest -q -p no:cacheprovider -W ignore::RuntimeWarning \
    "${args[@]}" || status=$?
python -m coverage report
exit "$status"
