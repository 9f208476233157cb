"""One notice when numba_quant starts compiling kernels that its cache does not hold.

A first call with an empty Numba cache compiles the kernels its route needs, which takes
seconds; later calls, and later processes, load them from the cache.  Numba announces a
compilation (its ``numba:compile`` event) only after a cache miss, so listening to that
event tells a cold cache from a warm one without looking into the cache.  The notice is a
:class:`CompileNotice` warning, given once per process, attributed to the caller's line;
``warnings.simplefilter("ignore", CompileNotice)`` silences it.
"""
import sys
import warnings

from numba.core import event, types


class CompileNotice(UserWarning):
    """Kernels are being compiled on a first call (their on-disk cache was empty)."""


class _Listener(event.Listener):
    given = False

    def on_start(self, ev):
        if _Listener.given:
            return
        dispatcher = ev.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("numba_quant."):
            return
        _Listener.given = True
        dtypes = [str(a.dtype) for a in ev.data.get("args", ()) if isinstance(a, types.Array)]
        what = f" for {dtypes[0]}" if dtypes else ""
        _warn(f"numba_quant: compiling CPU kernels{what} (first call, a few seconds; "
              "cached afterwards)")

    def on_end(self, ev):
        pass


def _warn(message):
    """Warn as if from the first caller outside numba and numba_quant."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals.get("__name__", "").startswith("numba")
                                 or frame.f_globals.get("__name__") == "contextlib"):
        frame = frame.f_back
    if frame is None:
        warnings.warn(message, CompileNotice, stacklevel=2)
        return
    warnings.warn_explicit(message, CompileNotice, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"),
                           registry=frame.f_globals.setdefault("__warningregistry__", {}))


_LISTENER = None


def install():
    """Listen for compilations (once per process)."""
    global _LISTENER
    if _LISTENER is None:
        _LISTENER = _Listener()
        event.register("numba:compile", _LISTENER)
