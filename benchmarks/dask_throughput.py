#!/usr/bin/env python
"""Throughput of a Dask LocalCluster against the in-memory call.

Usage::

    python benchmarks/dask_throughput.py                    # 1 GB float32, 2 workers
    python benchmarks/dask_throughput.py --gb 4 --channels 1024 --repeats 5

Writes a float32 array of ``--gb`` GB, shape ``(channels, n)``, to an ``.npy`` file in a
temporary folder, then times per-channel ``min_max_observer`` (axis 0) and
``fake_quantization`` with per-channel parameters:

* ``in-memory``: the numpy call on the array loaded into this process (numba's threads);
* ``cluster, file``: a ``LocalCluster`` of ``--workers`` processes, one thread each
  (``NUMBA_NUM_THREADS=1``), on ``numba_quant.open_dask(path)``: every run reads the file
  (from the page cache after the first) chunk by chunk in the workers;
* ``cluster, persisted``: the same on the array persisted in the workers' memory first.

The fake-quantized result is persisted in the workers (not brought back), as a Dask user
keeps it distributed.  Times are medians of ``--repeats`` after one warm-up run; the
ratio is in-memory time over cluster time (cluster throughput as a fraction of the
in-memory call's).  Results are checked bit for bit against the in-memory call.
"""
import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Imported by main(), not here: Dask's worker processes run this module's top level again
# (as __mp_main__), and numba (which timing imports) must not start there before the
# worker's NUMBA_NUM_THREADS is set.
distributed = None
timing = None
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_time(run, repeats, release=None):
    """Median time of ``run()`` after one warm-up run (compilation, the workers' first
    kernel loads, the page cache); ``release(result)`` runs after each, untimed."""
    return timing.time_one(run, repeats, release=release).median


def _forget(client, futures):
    """Drop a persisted result from the workers and wait until it is gone, so that the
    next persist of the same graph computes it again instead of finding it there."""
    from dask.core import flatten
    keys = list(flatten(futures.__dask_keys__()))
    client.cancel(futures)
    del futures
    while any(client.who_has(keys).values()):
        time.sleep(0.01)
    time.sleep(0.2)  # the scheduler forgets the cancelled keys asynchronously


def _warm_worker(shape, scale, zero_point):
    """Run the chunk-level calls of the timed graphs once in a worker."""
    import numba_quant as nq
    from numba_quant._dask import channels as _dask
    x = np.ones(shape, np.float32)
    _dask.channel_states  # noqa: B018 - the module and its imports, loaded
    nq.min_max_observer(x, per_layer_quantization=False, axis=0)
    nq.fake_quantization(x, scale, zero_point, axis=0)


def _digest(block):
    """A chunk's bytes as a short digest: results are compared without a second copy of
    a multi-GB array in memory."""
    return hashlib.blake2b(np.ascontiguousarray(block).view(np.uint8)).hexdigest()


def _write(path, channels, n, seed=0):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(channels, n))
    rng = np.random.default_rng(seed)
    step = max(1, channels // 16)
    for start in range(0, channels, step):
        rows = out[start:start + step]
        rows[...] = rng.standard_normal(rows.shape, dtype=np.float32)
        rows *= np.float32(1 + start % 7)
    out.flush()
    del out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-mb", type=float, default=64.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    global distributed, timing
    import dask
    import distributed
    import timing

    import numba
    import numba_quant as nq

    n = int(args.gb * 2**30 / 4 / args.channels)
    columns = max(1, int(args.chunk_mb * 2**20 / 4 / args.channels))
    print(f"float32 ({args.channels}, {n}) = {args.channels * n * 4 / 2**30:.2f} GiB, "
          f"chunks ({args.channels}, {columns}); numba threads in memory: "
          f"{numba.get_num_threads()}; {args.workers} workers x 1 thread; "
          f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.npy")
        _write(path, args.channels, n)

        x = np.load(path)
        s, z = nq.min_max_observer(x, per_layer_quantization=False, axis=0)
        fake = nq.fake_quantization(x, s, z, axis=0)
        t_observe = _median_time(
            lambda: nq.min_max_observer(x, per_layer_quantization=False, axis=0),
            args.repeats)
        t_fake = _median_time(lambda: nq.fake_quantization(x, s, z, axis=0), args.repeats)
        expected = (s, z, [_digest(fake[:, i:i + columns]) for i in range(0, n, columns)])
        del x, fake
        print(f"in-memory: observer {t_observe:.3f} s, fake {t_fake:.3f} s", flush=True)

        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None,
                                      env={"NUMBA_NUM_THREADS": "1"}) as cluster, \
                distributed.Client(cluster) as client:
            # Each worker loads the kernels once (seconds): done here, not in a timing.
            client.run(_warm_worker, (args.channels, columns), s, z)
            dx_file = nq.open_dask(path, chunks=(args.channels, columns))
            dx_kept = client.persist(dx_file)
            distributed.wait(dx_kept)
            for where, dx in (("file", dx_file), ("persisted", dx_kept)):
                observed = nq.min_max_observer(dx, per_layer_quantization=False, axis=0)

                def observe():
                    return dask.compute(*observed, scheduler=client)

                def fake_persisted():
                    result = client.persist(nq.fake_quantization(dx, s, z, axis=0))
                    distributed.wait(result)
                    return result

                if expected is not None:  # checked once (chunk digests of the fake result)
                    got_s, got_z = observe()
                    result = fake_persisted()
                    got_digests = client.compute(
                        [dask.delayed(_digest)(chunk)
                         for chunk in result.to_delayed().ravel()], sync=True)
                    _forget(client, result)
                    for got, want in zip((got_s, got_z), expected):
                        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
                    assert got_digests == expected[2]
                    expected = None
                c_observe = _median_time(observe, args.repeats)
                c_fake = _median_time(fake_persisted, args.repeats,
                                      lambda result: _forget(client, result))
                rows.append((where, c_observe, c_fake))
                print(f"cluster, {where}: observer {c_observe:.3f} s, fake {c_fake:.3f} s",
                      flush=True)

    gb = args.channels * n * 4 / 1e9
    print("\n| run | observer s | GB/s | ratio | fake s | GB/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| in-memory | {t_observe:.3f} | {gb / t_observe:.2f} | 1 | {t_fake:.3f} | "
          f"{gb / t_fake:.2f} | 1 |")
    for where, c_observe, c_fake in rows:
        print(f"| {args.workers}-worker cluster, {where} | {c_observe:.3f} | "
              f"{gb / c_observe:.2f} | {t_observe / c_observe:.2f} | {c_fake:.3f} | "
              f"{gb / c_fake:.2f} | {t_fake / c_fake:.2f} |")


if __name__ == "__main__":
    main()
