#!/usr/bin/env bash
# numba_quant on a real GPU (an H100): versions, exactness against the CPU path and the
# golden file, the test suite's GPU tests, and timings against CuPy and copy bandwidth.
#
# Run from the repository root with $OUT set (logs go there; without $OUT, to ./gpu_check_out):
#     bash tools/gpu_check.sh [PART ...]   PART: env timing overhead exact pytest (default: all)
# The parts are Python programs beside this script: gpu_env.py, gpu_timing.py,
# gpu_overhead.py, gpu_exact.py (each also runs on its own), and the GPU tests.
# Each part runs under `timeout` (30 + 240 + 60 + 150 + 170 s at most).  On an H100,
# "timing overhead pytest" took 105 s; the "medium" exact part needs more than its 150 s
# (GQ_SIZE=tiny fits).  Logs (at most 6 files): env.txt timing.txt overhead.txt exact.txt
# pytest.txt summary.txt.  Exit status: the number of failed parts.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export NUMBA_ENABLE_CUDASIM="${NUMBA_ENABLE_CUDASIM:-0}"  # 1 only for a dry run of this script
export NUMBA_CACHE_DIR="$(mktemp -d)"
# numba-cuda 0.30.4 calls np.row_stack, which numpy 2.5 removed: on such a machine no kernel
# compiles.  tools/gpu_site/sitecustomize.py restores the alias for this script's processes
# only (the `cuda` extras of setup.cfg pin numpy below 2.5 for users).
export PYTHONPATH="$PWD/tools/gpu_site:$PYTHONPATH"
PARTS="${*:-env timing overhead exact pytest}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
failed=0

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log, record the result
  local name=$1 limit=$2
  shift 2
  case " $PARTS " in *" $name "*) ;; *) return 0 ;; esac
  local start=$SECONDS
  echo "=== $name (limit ${limit}s): $*" | tee -a "$SUMMARY"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.txt"
  local verdict=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then verdict="TIMED OUT"; elif [ $rc -ne 0 ]; then verdict="FAILED (rc $rc)"; fi
  [ "$verdict" = ok ] || failed=$((failed + 1))
  echo "=== $name: $verdict after $((SECONDS - start)) s" | tee -a "$SUMMARY"
}

part env 30 bash -c 'date -u; nvidia-smi; "$0" "$1"' "$PY" tools/gpu_env.py
part timing 240 "$PY" tools/gpu_timing.py
part overhead 60 "$PY" tools/gpu_overhead.py
part exact 150 env GQ_KIND="${GQ_KIND:-cupy}" GQ_SIZE="${GQ_SIZE:-medium}" "$PY" tools/gpu_exact.py
part pytest 170 "$PY" -m pytest -q -p no:cacheprovider --maxfail=20 -k "gpu or golden or exactness or cupy or torch" tests
echo "=== $failed part(s) failed" | tee -a "$SUMMARY"
rm -rf "$NUMBA_CACHE_DIR"
exit $failed
