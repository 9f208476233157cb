"""Command line: quantization parameters of the arrays in .npy/.npz files.

``numba-quant weights.npz`` (or ``python -m numba_quant weights.npz``) prints, for
every array, its shape, dtype, min, max, scale and zero point, computed with
:func:`numba_quant.min_max_observer`. Per-channel results are summarised (number of
channels, min/median/max of the scales, range of the zero points); ``--json``
prints every value. Without a file it runs on the built-in example set
(:func:`numba_quant.examples.example_weights`); ``--example minilm`` uses the
real all-MiniLM-L6-v2 weights when the ``examples`` extra is installed.

Exit status: 0 on success, 1 when an array or a file could not be processed (each
failure is one line on stderr; the other arrays are still reported), 2 for a
command-line usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

PROG = "numba-quant"

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EMPTY_MAGIC = b"PK\x05\x06"

# Exceptions that carry a message meant for the user.
_EXPECTED = (ValueError, TypeError, OSError, KeyError, RuntimeError)


class CliError(Exception):
    """An error reported as one line, with exit status 1."""


@dataclass
class Source:
    """Named arrays to observe, and where they came from."""
    kind: str                 # "files", "builtin" or "minilm"
    description: str
    arrays: list = field(default_factory=list)   # (name, array) pairs
    errors: list = field(default_factory=list)   # (name, message) pairs


def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("numba_quant")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Compute quantization parameters (scale and zero point, as OneFlow's "
            "MinMaxObserver) of the arrays in .npy/.npz files. Without a file, runs on "
            "the built-in example set of weight tensors."),
        epilog=(
            "examples: numba-quant;  numba-quant weights.npz --per-channel;  "
            "numba-quant --example minilm --scheme affine --bits 4 --json"),
    )
    p.add_argument("files", nargs="*", metavar="FILE",
                   help=".npy or .npz file(s); every array in an .npz is reported")
    p.add_argument("--example", choices=("builtin", "minilm"), default=None,
                   help="run on an example set instead of files: 'builtin' (generated "
                        "weights, the default without files) or 'minilm' (real "
                        "all-MiniLM-L6-v2 weights; needs the 'examples' extra)")
    p.add_argument("--formula", default="google", choices=("google", "cambricon"),
                   help="quantization_formula (default: google); with cambricon the "
                        "scale is a power-of-two shift exponent")
    p.add_argument("--bits", type=int, default=8, metavar="N",
                   help="quantization_bit, 2..16 (default: 8)")
    p.add_argument("--scheme", default="symmetric", choices=("symmetric", "affine"),
                   help="quantization_scheme (default: symmetric)")
    p.add_argument("--per-channel", action="store_true",
                   help="one scale and zero point per channel along --axis "
                        "(per_layer_quantization=False)")
    p.add_argument("--axis", type=int, default=0,
                   help="channel axis for --per-channel (default: 0; negative counts "
                        "from the end)")
    p.add_argument("--nonfinite", default="raise", choices=("raise", "omit"),
                   help="NaN/inf in the input: 'raise' (default, an error) or 'omit' "
                        "(ignore them)")
    p.add_argument("--gpu", action="store_true",
                   help="copy each array to the GPU and run the CUDA kernels "
                        "(needs numba-cuda and a GPU, or NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a Dask cluster: a scheduler address (tcp://host:8786) or "
                        "'local' for a LocalCluster on this machine; .npy files are read "
                        "chunk by chunk by the workers, so files larger than memory work "
                        "(needs the dask extra)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with every scale and zero point instead of a table")
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {_package_version()}")
    return p


# ----------------------------------------------------------------------------- input

def _load_file(path: str, source: Source) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        source.errors.append((path, f"cannot read file: {exc.strerror or exc}"))
        return
    try:
        if magic.startswith(_NPY_MAGIC):
            source.arrays.append((path, np.load(path, mmap_mode="r", allow_pickle=False)))
        elif magic.startswith(_ZIP_MAGIC) or magic.startswith(_ZIP_EMPTY_MAGIC):
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if not names:
                    source.errors.append((path, "the .npz file holds no arrays"))
                for key in names:
                    try:
                        source.arrays.append((f"{path}:{key}", npz[key]))
                    except _EXPECTED as exc:
                        source.errors.append((f"{path}:{key}", _one_line(exc)))
        else:
            source.errors.append((path, "not a .npy or .npz file"))
    except _EXPECTED as exc:
        source.errors.append((path, f"cannot load: {_one_line(exc)}"))
    except Exception as exc:  # zipfile.BadZipFile, pickle errors and the like
        source.errors.append((path, f"cannot load: {type(exc).__name__}: {_one_line(exc)}"))


def collect_source(args) -> Source:
    if args.files and args.example:
        raise CliError("give either files or --example, not both")
    if args.files:
        source = Source("files", f"{len(args.files)} file(s)")
        for path in args.files:
            _load_file(path, source)
        return source
    from numba_quant import examples
    if args.example == "minilm":
        try:
            arrays = examples.minilm_weights()
        except examples.ExampleNotAvailable as exc:
            raise CliError(str(exc)) from None
        return Source("minilm", f"the all-MiniLM-L6-v2 weights ({len(arrays)} float "
                                f"tensors from {examples.minilm_path()})",
                      list(arrays.items()))
    arrays = examples.example_weights()
    if args.example == "builtin":
        what = "the built-in example set"
    else:
        what = "no input files given; running on the built-in example set"
    return Source("builtin", f"{what} ({len(arrays)} weight tensors generated by "
                             f"numba_quant.examples.example_weights())",
                  list(arrays.items()))


# --------------------------------------------------------------------------- compute

def _range(data, omit: bool):
    """``(min, max, non-finite count)`` of a backend array, from the library's own
    reduction (the observer has already raised for what it rejects)."""
    from numba_quant._dispatch import backend, to_host
    from numba_quant._minmax import observe_minmax
    ops = backend(data)
    lo, hi = observe_minmax(ops, data, None, omit)
    n_nonfinite = ops.count_nonfinite(data) if omit else 0
    return float(to_host(lo)[0]), float(to_host(hi)[0]), n_nonfinite


def _dask_observe(array, observer, omit, client):
    """``(scale, zero_point, lo, hi, non-finite count)`` of an array on a Dask cluster:
    an ``.npy`` file's memory map is opened there as chunks, never read here."""
    import dask
    import dask.array as da
    from numba_quant import _checks, _dask
    from numba_quant.dask_io import open_dask
    if isinstance(array, np.memmap) and array.filename:
        x = open_dask(array.filename)
    else:
        x = da.from_array(np.asarray(array))
    scale, zero_point = observer(x)
    states = _dask.channel_states(x, None, omit)  # the per-layer range, same graph kind
    count = (~da.isfinite(x)).sum() if omit else da.zeros((), np.int64)
    scale, zero_point, states, count = dask.compute(scale, zero_point, states, count,
                                                    scheduler=client)
    lo, hi = _dask.settled_range(states, _checks.compute_dtype(x.dtype), True)
    return scale, zero_point, float(lo[0]), float(hi[0]), int(count)


def observe(name: str, array, observer, args, client=None) -> dict:
    """Observe one array; returns the record printed by the table or JSON output."""
    from numba_quant._dispatch import backend, to_host
    if client is not None:
        scale, zero_point, lo, hi, n_nonfinite = _dask_observe(
            array, observer, args.nonfinite == "omit", client)
        x = array
    else:
        x = np.asarray(array)
        arg = x
        if args.gpu:
            from numba import cuda
            arg = cuda.to_device(np.ascontiguousarray(x))
        scale, zero_point = observer(arg)
        lo, hi, n_nonfinite = _range(backend(arg).as_array(arg), args.nonfinite == "omit")
    scale = to_host(scale).reshape(-1)
    zero_point = to_host(zero_point).reshape(-1)
    record = {
        "name": name,
        "shape": list(x.shape),
        "dtype": str(x.dtype),
        "min": lo,
        "max": hi,
        "nonfinite": n_nonfinite,
        "scale_dtype": str(scale.dtype),
        "scale": [float(v) for v in scale],
        "zero_point": [float(v) for v in zero_point],
    }
    if args.per_channel:
        record["channels"] = int(scale.size)
        record["axis"] = args.axis
        record["scale_min"] = float(scale.min())
        record["scale_median"] = float(np.median(scale))
        record["scale_max"] = float(scale.max())
        record["zero_point_min"] = float(zero_point.min())
        record["zero_point_max"] = float(zero_point.max())
    return record


# ---------------------------------------------------------------------------- output

def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.6g}"


def _settings_text(args) -> str:
    layout = (f"per-channel (axis {args.axis})" if args.per_channel else "per-layer")
    text = (f"formula={args.formula} scheme={args.scheme} bits={args.bits} {layout} "
            f"nonfinite={args.nonfinite}")
    if args.formula == "cambricon":
        text += " (scale = shift exponent; scheme ignored)"
    if args.gpu:
        text += " device=gpu"
    return text


def _table(records, per_channel: bool) -> list[str]:
    if per_channel:
        header = ["name", "shape", "dtype", "min", "max", "channels",
                  "scale min / median / max", "zero_point"]
    else:
        header = ["name", "shape", "dtype", "min", "max", "scale", "zero_point"]
    rows = []
    for r in records:
        row = [r["name"], "(" + ", ".join(str(n) for n in r["shape"])
               + ("," if len(r["shape"]) == 1 else "") + ")",
               r["dtype"], _num(r["min"]), _num(r["max"])]
        if per_channel:
            zp = (_num(r["zero_point_min"]) if r["zero_point_min"] == r["zero_point_max"]
                  else f"{_num(r['zero_point_min'])}..{_num(r['zero_point_max'])}")
            row += [str(r["channels"]),
                    f"{_num(r['scale_min'])} / {_num(r['scale_median'])} / "
                    f"{_num(r['scale_max'])}", zp]
        else:
            row += [_num(r["scale"][0]), _num(r["zero_point"][0])]
        if r["nonfinite"]:
            row[0] += f" [{r['nonfinite']} non-finite omitted]"
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    left = {0, 1, 2, 6} if per_channel else {0, 1, 2}
    lines = []
    for row in [header] + rows:
        cells = [str(c).ljust(w) if i in left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


# ------------------------------------------------------------------------------ main

def make_observer(args):
    """The :class:`numba_quant.MinMaxObserver` for the command-line settings (it
    checks them once, before any array is read)."""
    import numba_quant
    try:
        return numba_quant.MinMaxObserver(
            quantization_formula=args.formula,
            quantization_bit=args.bits,
            quantization_scheme=args.scheme,
            per_layer_quantization=not args.per_channel,
            axis=args.axis,
            nonfinite=args.nonfinite,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(_one_line(exc)) from None


def check_gpu() -> None:
    """Fail early, in one line, when --gpu cannot run."""
    try:
        from numba import cuda
        usable = cuda.is_available()
    except Exception:  # numba without a CUDA target, or a broken CUDA install
        usable = False
    if not usable:
        raise CliError(
            "--gpu needs a CUDA GPU and its driver (numba.cuda.is_available() is False); "
            "install the cuda extra on a machine with a GPU, or set "
            "NUMBA_ENABLE_CUDASIM=1 to run the kernels in Numba's CUDA simulator")


@contextlib.contextmanager
def _dask_client(address):
    """A Dask client for ``--dask`` (a LocalCluster for 'local'), or None without it."""
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise CliError("--dask needs Dask: pip install 'numba_quant[dask]'") from None
    if address == "local":
        with distributed.LocalCluster(dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client
    else:
        with distributed.Client(address, set_as_default=False) as client:
            yield client


def run(args, out=None, err=None) -> int:
    """Run the command for parsed ``args``, writing to ``out``/``err`` (default: the
    process's stdout and stderr); returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    observer = make_observer(args)
    if args.gpu:
        if args.dask:
            raise CliError("give either --gpu or --dask, not both")
        check_gpu()
    source = collect_source(args)
    records = []
    errors = list(source.errors)
    with _dask_client(args.dask) as client:
        for name, array in source.arrays:
            try:
                records.append(observe(name, array, observer, args, client))
            except _EXPECTED as exc:
                errors.append((name, _one_line(exc)))
    for name, message in errors:
        print(f"{PROG}: error: {name}: {message}", file=err)
    if args.json:
        doc = {
            "source": source.kind,
            "description": source.description,
            "settings": {
                "quantization_formula": args.formula,
                "quantization_bit": args.bits,
                "quantization_scheme": args.scheme,
                "per_layer_quantization": not args.per_channel,
                "axis": args.axis,
                "nonfinite": args.nonfinite,
                "device": "gpu" if args.gpu else "cpu",
                "dask": args.dask,
            },
            "arrays": records,
            "errors": [{"name": n, "message": m} for n, m in errors],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        if source.kind != "files":
            print(f"{PROG}: {source.description}", file=out)
        print(f"settings: {_settings_text(args)}", file=out)
        if records:
            print(file=out)
            for line in _table(records, args.per_channel):
                print(line, file=out)
    return 1 if errors else 0


def main(argv=None) -> int:
    """Entry point of ``numba-quant`` and ``python -m numba_quant``; returns the exit
    status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:
        # Output piped into a command that stopped reading (e.g. `| head`): stop
        # quietly, and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except _EXPECTED as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, with a pointer to report it
        print(f"{PROG}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(please report it with the command that caused it)", file=sys.stderr)
        return 1
