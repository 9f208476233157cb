"""Calls from several Python threads at once give the same results as one at a time.

Under Numba's fallback threading layer (workqueue), two threads entering parallel code
at once abort the process; the host backend serialises its parallel kernels.  The inputs
are large enough to take the parallel kernels.
"""
import threading

import numpy as np

import numba_quant as nq
import oracle
from golden import assert_same


def _run_in_threads(work, n_threads=4):
    results = [None] * n_threads
    errors = []

    def target(k):
        try:
            results[k] = work(k)
        except BaseException as exc:  # reported below, with the thread's number
            errors.append((k, exc))

    threads = [threading.Thread(target=target, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_observer_and_fake_quantization_from_threads():
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((64, 4096), dtype=np.float32) * (k + 1) for k in range(4)]

    def work(k):
        x = arrays[k]
        scale, zero_point = nq.min_max_observer(x, per_layer_quantization=False)
        return scale, zero_point, nq.fake_quantization(x, scale, zero_point)

    for k, (scale, zero_point, fake) in enumerate(_run_in_threads(work)):
        x = arrays[k]
        expected_scale, expected_zero_point = oracle.min_max_observer(
            x, "google", 8, "symmetric", False)
        assert_same(scale, expected_scale, f"thread {k} scale")
        assert_same(zero_point, expected_zero_point, f"thread {k} zero point")
        assert_same(fake, oracle.fake_quantization(x, expected_scale, expected_zero_point),
                    f"thread {k} fake quantization")
