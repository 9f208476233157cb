"""Running an export's per-tensor work on a Dask cluster, the results in order.

The client writes the output file in its order, so it needs the results in that order;
keeping only a few tasks in flight per worker bounds the memory held by finished but
unwritten results (each at most one tensor's output bytes).
"""

__all__ = ["results_in_order"]

# Tasks in flight per worker.
IN_FLIGHT_PER_WORKER = 2


def results_in_order(client, function, calls):
    """Yield ``function(*args)`` for each ``args`` of ``calls`` (None for a call that is
    None), computed on the workers of the Dask ``client``."""
    window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info().get("workers", {})))
    calls = iter(calls)
    pending = []

    def submit_next():
        args = next(calls, StopIteration)
        if args is StopIteration:
            return False
        pending.append(None if args is None else client.submit(function, *args, pure=False))
        return True

    while len(pending) < window and submit_next():
        pass
    while pending:
        head = pending.pop(0)
        submit_next()
        yield None if head is None else head.result()
