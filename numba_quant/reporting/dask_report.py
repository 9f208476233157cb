"""The model report on a Dask cluster: one task per tensor, each tensor read in the
worker that runs it.

A task gets a locator (a file's path and the tensor's name, or the array itself for
tensors that only exist in memory), opens the checkpoint there (the tensor is memory
mapped, and read chunk by chunk by the report's own passes) and returns the tensor's
:class:`~numba_quant.reporting.report.TensorResult` and errors.  The client only lists the
tensors and assembles the report, so a checkpoint larger than its memory (or than any
one machine's, a tensor at a time per worker) is reported by the workers; the numbers
are those of :func:`numba_quant.report`, which runs the same per-tensor code.
"""
import contextlib
import time

from numba_quant.reporting.checkpoint import CheckpointError, TensorEntry, open_checkpoint
from numba_quant.reporting.report import Report, _histogram, _report_tensor, _worst_names


class FileTensor:
    """A tensor of a checkpoint file, found again by name in the worker."""

    def __init__(self, path, name, prefix_names):
        self.path, self.name, self.prefix_names = str(path), name, prefix_names

    def entry(self):
        for entry in open_checkpoint(self.path, prefix_names=self.prefix_names).tensors:
            if entry.name == self.name:
                return entry
        raise CheckpointError(f"{self.path}: no tensor {self.name!r} any more")


class ArrayTensor:
    """A tensor held in memory (the built-in examples): sent with the task."""

    def __init__(self, name, shape, dtype, values):
        self.name, self.shape, self.dtype, self.values = name, shape, dtype, values

    def entry(self):
        values = self.values
        return TensorEntry(self.name, self.shape, self.dtype, lambda: values)


def _report_one(locator, recipes, nonfinite):
    errors = []
    try:
        result = _report_tensor(locator.entry(), recipes, nonfinite, errors)
    except CheckpointError as exc:
        errors.append((locator.name, str(exc)))
        result = None
    return result, errors


def _histogram_one(locator):
    return _histogram(locator.entry())


def report(locators, description, skipped, recipes, nonfinite, scheduler, histograms=3):
    """:func:`numba_quant.report`'s :class:`Report` with every tensor computed by a task
    on ``scheduler`` (a ``distributed.Client``, or a Dask scheduler name)."""
    import dask
    started = time.perf_counter()
    rep = Report(description, list(recipes), skipped=list(skipped), nonfinite=nonfinite)
    tasks = [dask.delayed(_report_one, pure=False)(loc, list(recipes), nonfinite)
             for loc in locators]
    by_name = {}
    for locator, (result, errors) in zip(locators, dask.compute(*tasks,
                                                                 scheduler=scheduler)):
        rep.errors += errors
        if result is not None:
            rep.tensors.append(result)
            by_name[locator.name] = locator
    worst = _worst_names(rep, histograms)
    found = dask.compute(*[dask.delayed(_histogram_one)(by_name[n]) for n in worst],
                         scheduler=scheduler)
    for name, hist in zip(worst, found):
        if hist is not None:
            rep.histograms[name] = hist
    rep.seconds = time.perf_counter() - started
    return rep


class ClusterError(ValueError):
    """The cluster of ``--dask`` cannot be had: no distributed, a bad worker count, an
    unreachable scheduler."""


@contextlib.contextmanager
def cluster_client(scheduler, workers=2):
    """A ``distributed.Client``: on a local cluster of ``workers`` one-thread processes
    for ``scheduler == "local"``, else connected to the scheduler at that address
    (``tcp://host:8786``).  Used by the report and by ``numba-quant quantize``."""
    try:
        import distributed
    except ImportError:
        raise ClusterError("--dask needs Dask and distributed: pip install "
                           "'numba_quant[dask]'") from None
    if workers < 1:
        raise ClusterError(f"--dask-workers must be at least 1; got {workers}")
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(scheduler, timeout=30))
            except OSError as exc:
                text = " ".join(str(exc).split()) or type(exc).__name__
                raise ClusterError(f"--dask {scheduler}: cannot reach the scheduler "
                                   f"({text})") from None
        yield client
