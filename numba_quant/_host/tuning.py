"""Tuning constants of both backends, in one place.

They choose kernels and split work; none changes a result.  The backends read the
run-time ones as ``_tuning.NAME`` at each call, so a test can shrink them (for example
``monkeypatch.setattr(_tuning, "SMALL", 0)``) to send small inputs down every kernel
route.  The compile-time ones are frozen into compiled kernels.

Kept free of numba so that it imports with ``numba_quant``.
"""

# --------------------------------------------------------------------------- CPU, run time
# Below this many elements one thread is faster than starting a parallel region.
PARALLEL_THRESHOLD = 1 << 16
# Aim for this many tasks per thread, with at least this many elements per task.
TASKS_PER_THREAD = 4
MIN_TASK_ELEMENTS = 1 << 15
# Inner runs shorter than this are reduced period by period (reduce_periodic) when the
# data is contiguous and one period of channels * inner elements stays within MAX_PERIOD.
# The element-wise maps walk such layouts along the outer axis (map_by_outer).
LONG_INNER = 64
MAX_PERIOD = 1 << 16
# Contiguous runs shorter than SHORT_ROW whose period (channels * inner) is longer than
# this go to the short-run kernel (reduce_short_runs), unless non-finite values are to be
# omitted.
SHORT_RUNS_PERIOD = 1 << 16
# Per-channel formulas (scale and zero point) run in parallel from this many channels.
PARALLEL_CHANNELS = 1 << 14
# Range selection (compute_amax, HistogramObserver.range) runs rows on several threads
# from this much work (rows x bins x candidates).
SELECTION_WORK = 1 << 20
# Up to this many elements (and for every serial per-layer reduction) a reduction is one
# compiled call with its own small outputs, the formulas included.
SMALL = 1 << 12

# float16 and bfloat16 inputs (and dequantize's codes of another type than the result)
# are converted this many elements at a time into one reused buffer, each piece going
# through the kernels of float32 (or float64) input: memory stays at one buffer instead
# of a converted copy of the whole input (_cpu_chunks).
WIDEN_CHUNK = 1 << 20

# The model report reads, converts and quantizes large tensors this many elements at a
# time (whole rows): memory stays near one tensor plus a few chunks.
REPORT_CHUNK = 1 << 22

# --------------------------------------------------------------------------- CPU, compiled in
# Numba's on-disk cache is keyed on the file that defines a kernel, not on this one: after
# changing these, clear the cache (NUMBA_CACHE_DIR or __pycache__/*.nbi, *.nbc).
# Rows shorter than this are indexed directly instead of sliced.
SHORT_ROW = 16
# Elements per block of the short-run reduction: its four working buffers stay in L2.
RUN_BLOCK = 1 << 13

# --------------------------------------------------------------------------- GPU, run time
# Launch configuration: threads per block (rounded down to a power of two, at most
# _cuda_kernels.SHARED) and the most blocks per launch.  Tests shrink it for the
# simulator; updated in place (the GPU backend holds the same dict).
LAUNCH = {"threads": 256, "max_blocks": 1024}
# Inner runs at least this long (or a block, if smaller) are reduced along the run by
# groups of threads; shorter ones are walked down the outer axis column by column.
WARP = 32
# Elements a thread should at least get in a reduction before the work is split further.
MIN_PER_THREAD = 8
# Elements per thread and loop trip of the element-wise kernels (they unroll 4 ways).
UNROLL = 4
# Reductions into at most this many channels use a key array kept between calls
# (1 MiB); more channels get a fresh one, filled first.
KEPT_KEYS = 1 << 16
# float16 and bfloat16 device arrays (and dequantize's codes of another type than the
# result) larger than this are converted this many elements at a time into one reused
# float32 buffer (64 MiB) on the device, each piece going through the kernels of float32
# input, rather than into a float32 copy of the whole (_cuda_chunks).
DEVICE_WIDEN_CHUNK = 1 << 24

# --------------------------------------------------------------------------- float formats
# CPU: elements per parallel task of the low-precision format kernels (_cpu_float);
# block kernels give each task whole blocks, about this many elements.  The GPU kernels
# use LAUNCH above.
FLOAT_TASK = 1 << 14

# --------------------------------------------------------------------------- GGUF types
# CPU: super-blocks of a row whose sub-blocks the K-quants search side by side (the lanes
# of the vectorised search loops); each task's scratch grows by 8 KiB per super-block.
GGUF_CPU_SUPER_BLOCKS = 16
# GPU: values per thread of the GGUF kernels, in whole blocks (one block of the K-quants
# and IQ4_XS, 8 blocks of the 32-value types, 256 values of F16/BF16).
GGUF_GPU_TASK_VALUES = 256

# --------------------------------------------------------------------------- export
# Weights are read, quantized and written this many float32 bytes of rows at a time
# (export.to_compressed_tensors): what bounds the memory beyond one tensor's outputs.
EXPORT_CHUNK_BYTES = 64 << 20
# GGUF output files are written past the page cache in blocks of this many bytes
# (export.direct_file): 16 MiB wrote 1.2 GB in 0.87 s here, 4 MiB in 1.15 s.
EXPORT_WRITE_BLOCK_BYTES = 16 << 20
