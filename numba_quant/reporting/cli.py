"""Command line: what quantizing a model costs, recipe by recipe.

``numba-quant model.safetensors`` (or ``python -m numba_quant ...``) reads every float
tensor of a checkpoint (``.safetensors`` files and sharded directories, ``.npy``/``.npz``,
PyTorch ``.pt``/``.bin`` when torch is installed), quantizes it with each recipe of
``--recipes`` (default: every built-in recipe this installation offers; see
:mod:`numba_quant.reporting.recipes`) and prints a table of the quantization error (SQNR) per
tensor and recipe, then a summary per recipe; ``--json`` prints every number, ``-o
report.html`` (or ``.md``, ``.json``) writes the report to a file.  The OneFlow settings
``--formula``/``--bits``/``--scheme``/``--per-channel``/``--axis`` add their own recipe,
and ``--scales`` prints the scale and zero point of each tensor under those settings
instead (computed with :func:`numba_quant.min_max_observer`; with ``--json`` when any of
those settings is given, the JSON holds them too, under ``arrays``).  Without a file it
runs on the built-in example set (:func:`numba_quant.examples.example_weights`);
``--example minilm`` uses the real all-MiniLM-L6-v2 weights when the ``examples`` extra is
installed.

Tensors that are not floating point are skipped with a note.  Exit status: 0 on
success, 1 when a tensor or a file could not be processed (each failure is one line on
stderr; the other tensors are still reported), 2 for a command-line usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version

import numpy as np

import numba_quant
from numba_quant import examples
from numba_quant._dispatch import backend, device_backend, to_host
from numba_quant.export import cli as export_cli
from numba_quant.reporting import checkpoint
from numba_quant.reporting import dask_report as _dask_report
from numba_quant.reporting import recipes
from numba_quant.reporting import report as model_report
from numba_quant.reporting.report import value_range

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
    """Tensors to report on, and where they came from."""
    kind: str                 # "files", "builtin" or "minilm"
    description: str
    tensors: list = field(default_factory=list)  # checkpoint.TensorEntry, not read yet
    skipped: list = field(default_factory=list)  # (name, reason) pairs
    errors: list = field(default_factory=list)   # (name, message) pairs


def _package_version() -> str:
    try:
        return version("numba_quant")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or type(exc).__name__


# Settings of the OneFlow observer: given on the command line, they add their recipe.
ONEFLOW_FLAGS = ("formula", "bits", "scheme", "per_channel", "axis")
_ONEFLOW_DEFAULTS = {"formula": "google", "bits": 8, "scheme": "symmetric",
                     "per_channel": False, "axis": 0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Report what quantizing a model costs: every float tensor of a checkpoint "
            "quantized with each recipe, its error (SQNR, MSE, max abs error, clipped "
            "values) and size. Without a file, runs on the built-in example set of "
            "weight tensors. 'numba-quant quantize MODEL_DIR OUT_DIR --scheme SCHEME' "
            "(compressed-tensors) and 'numba-quant quantize IN.gguf OUT.gguf --type TYPE' "
            "(GGUF, as llama-quantize) write the quantized model instead (see "
            "'numba-quant quantize --help')."),
        epilog=(
            "examples: numba-quant;  numba-quant model.safetensors --recipes "
            "int8,int4-g128 -o report.html;  numba-quant shards/ --include 'encoder.*' "
            "--json;  numba-quant weights.npz --scales --per-channel;  numba-quant "
            "--example minilm. 1-D tensors (biases, norms) are quantized per layer by "
            "per-channel recipes."),
    )
    p.add_argument("files", nargs="*", metavar="FILE",
                   help=".safetensors file, directory of safetensors shards (with "
                        "model.safetensors.index.json), .npy/.npz file, or PyTorch "
                        ".pt/.bin state dict (needs torch)")
    p.add_argument("--example", choices=("builtin", "minilm"), default=None,
                   help="run on an example set instead of files: 'builtin' (generated "
                        "weights, the default without files) or 'minilm' (real "
                        "all-MiniLM-L6-v2 weights; needs the 'examples' extra)")
    p.add_argument("--recipes", default=None, metavar="LIST",
                   help="comma-separated recipes to compare (default: all built-in ones; "
                        "'all' also means that); see --list-recipes")
    p.add_argument("--list-recipes", action="store_true",
                   help="list the recipes and exit")
    p.add_argument("--include", action="append", default=None, metavar="PATTERN",
                   help="only tensors whose name matches this shell pattern (repeatable, "
                        "or comma-separated), e.g. 'encoder.*.weight'")
    p.add_argument("--exclude", action="append", default=None, metavar="PATTERN",
                   help="leave out tensors whose name matches this shell pattern")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="also write the report to PATH: .html (one self-contained page "
                        "with plots), .md, .json, or text")
    p.add_argument("--formula", default=None, choices=("google", "cambricon"),
                   help="quantization_formula (default: google); with cambricon the "
                        "parameter is a power-of-two shift exponent")
    p.add_argument("--bits", type=int, default=None, metavar="N",
                   help="quantization_bit, 2..16 (default: 8)")
    p.add_argument("--scheme", default=None, choices=("symmetric", "affine"),
                   help="quantization_scheme (default: symmetric)")
    p.add_argument("--per-channel", action="store_true", default=None,
                   help="one scale and zero point per channel along --axis "
                        "(per_layer_quantization=False)")
    p.add_argument("--axis", type=int, default=None,
                   help="channel axis for --per-channel (default: 0; negative counts "
                        "from the end)")
    p.add_argument("--nonfinite", default="raise", choices=("raise", "omit"),
                   help="NaN/inf in a tensor: 'raise' (default, an error for that "
                        "tensor) or 'omit' (ignore them)")
    p.add_argument("--scales", action="store_true",
                   help="print the scale and zero point (cambricon: shift) of each "
                        "tensor under the OneFlow settings instead of the report")
    p.add_argument("--gpu", action="store_true",
                   help="compute the scales and zero points (--scales, JSON 'arrays') "
                        "with the CUDA kernels (needs numba-cuda and a GPU, or "
                        "NUMBA_ENABLE_CUDASIM=1); the report's recipes run on the CPU")
    p.add_argument("--dask", default=None, metavar="SCHEDULER",
                   help="run the report on a Dask cluster, one task per tensor read from "
                        "its memory-mapped file by the worker: a scheduler address "
                        "(tcp://host:8786) or 'local' for a LocalCluster of "
                        "--dask-workers processes (needs the 'dask' extra)")
    p.add_argument("--dask-workers", type=int, default=2, metavar="N",
                   help="worker processes of --dask local (default: 2, one thread each)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with every number instead of tables")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default: when stderr is a terminal)")
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {_package_version()}")
    return p


def _oneflow_given(args) -> bool:
    """Whether any OneFlow setting was given on the command line."""
    return any(getattr(args, name) is not None for name in ONEFLOW_FLAGS)


def _fill_defaults(args):
    for name, value in _ONEFLOW_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


# ----------------------------------------------------------------------------- input

def _load_file(path: str, source: Source, several: bool, include, exclude) -> None:
    try:
        kind = checkpoint.detect_kind(path)
        prefix = several or kind in ("npy", "npz")
        ckpt = checkpoint.open_checkpoint(path, include, exclude, prefix_names=prefix)
    except checkpoint.CheckpointError as exc:
        source.errors.append((path, _without_path(str(exc), path)))
        return
    except _EXPECTED as exc:
        source.errors.append((path, f"cannot load: {_one_line(exc)}"))
        return
    except Exception as exc:  # zipfile.BadZipFile, pickle errors and the like
        source.errors.append((path, f"cannot load: {type(exc).__name__}: {_one_line(exc)}"))
        return
    source.tensors += ckpt.tensors
    source.skipped += ckpt.skipped


def _without_path(message: str, path: str) -> str:
    """A reader's message without its leading path (the error line names it)."""
    lead = f"{path}: "
    return message[len(lead):] if message.startswith(lead) else message


def _patterns(values):
    if not values:
        return None
    return [p for value in values for p in value.split(",") if p]


def collect_source(args) -> Source:
    if args.files and args.example:
        raise CliError("give either files or --example, not both")
    include, exclude = _patterns(args.include), _patterns(args.exclude)
    if args.files:
        source = Source("files", f"{len(args.files)} file(s)")
        for path in args.files:
            _load_file(path, source, len(args.files) > 1, include, exclude)
        if len(args.files) == 1:
            source.description = args.files[0]
        return source
    if args.example == "minilm":
        try:
            path = examples.minilm_path()
        except examples.ExampleNotAvailable as exc:
            raise CliError(str(exc)) from None
        ckpt = checkpoint.open_checkpoint(path, include, exclude)
        return Source("minilm", f"the all-MiniLM-L6-v2 weights ({len(ckpt.tensors)} float "
                                f"tensors from {path})", ckpt.tensors, ckpt.skipped)
    arrays = examples.example_weights()
    if args.example == "builtin":
        what = "the built-in example set"
    else:
        what = "no input files given; running on the built-in example set"
    ckpt = checkpoint.open_checkpoint(arrays, include, exclude)
    return Source("builtin", f"{what} ({len(arrays)} weight tensors generated by "
                             f"numba_quant.examples.example_weights())",
                  ckpt.tensors, ckpt.skipped)


# --------------------------------------------------------------------------- compute

def observe(name: str, array, observer, args) -> dict:
    """Observe one array; returns the record printed by the table or JSON output."""
    x = np.asarray(array)
    arg = device_backend().from_host(x, None) if args.gpu else x
    scale, zero_point = observer(arg)
    scale = to_host(scale).reshape(-1)
    zero_point = to_host(zero_point).reshape(-1)
    lo, hi, n_nonfinite = value_range(backend(arg).channels.as_array(arg),
                                      args.nonfinite == "omit")
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
    if args.formula == "cambricon":
        # The cambricon parameter is a shift exponent, not a scale: name it so.
        record = {(k.replace("scale", "shift") if k.startswith("scale") else k): v
                  for k, v in record.items()}
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
    param = "shift" if records and "shift" in records[0] else "scale"
    if per_channel:
        header = ["name", "shape", "dtype", "min", "max", "channels",
                  f"{param} min / median / max", "zero_point"]
    else:
        header = ["name", "shape", "dtype", "min", "max", param, "zero_point"]
    rows = []
    for r in records:
        row = [r["name"], "(" + ", ".join(str(n) for n in r["shape"])
               + ("," if len(r["shape"]) == 1 else "") + ")",
               r["dtype"], _num(r["min"]), _num(r["max"])]
        if per_channel:
            zp = (_num(r["zero_point_min"]) if r["zero_point_min"] == r["zero_point_max"]
                  else f"{_num(r['zero_point_min'])}..{_num(r['zero_point_max'])}")
            row += [str(r["channels"]),
                    f"{_num(r[param + '_min'])} / {_num(r[param + '_median'])} / "
                    f"{_num(r[param + '_max'])}", zp]
        else:
            row += [_num(r[param][0]), _num(r["zero_point"][0])]
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


def _recipes(args):
    """The recipes to compare: --recipes (or the defaults), plus the OneFlow settings'
    own recipe when any of them was given."""
    try:
        if args.recipes is None or args.recipes.strip() in ("", "all"):
            chosen = [recipes.get_recipe(n) for n in recipes.default_recipes()]
        else:
            chosen = [recipes.get_recipe(n.strip())
                      for n in args.recipes.split(",") if n.strip()]
        if _oneflow_given(args):
            own = recipes.oneflow_recipe(args.formula, args.bits, args.scheme,
                                         per_channel=args.per_channel, axis=args.axis)
            if own.name not in [r.name for r in chosen]:
                chosen.append(own)
    except (ValueError, TypeError) as exc:
        raise CliError(_one_line(exc)) from None
    unique = []
    for r in chosen:
        if r.name not in [u.name for u in unique]:
            unique.append(r)
    return unique


def _list_recipes(out) -> int:
    for name in recipes.available_recipes():
        print(f"{name:12s} {recipes.get_recipe(name).description}", file=out)
    print("also any OneFlow setting: int<bits>[-affine][-layer|-axis<k>], "
          "cambricon<bits>[-layer|-axis<k>] (e.g. int4-affine, cambricon8-layer)", file=out)
    return 0


def _settings_doc(args) -> dict:
    return {
        "quantization_formula": args.formula,
        "quantization_bit": args.bits,
        "quantization_scheme": args.scheme,
        "per_layer_quantization": not args.per_channel,
        "axis": args.axis,
        "nonfinite": args.nonfinite,
        "device": "gpu" if args.gpu else "cpu",
    }


def _observe_all(source, observer, args, errors):
    records = []
    for entry in source.tensors:
        try:
            # numpy's float types as stored (float16 computes in float32 in the
            # observer); bfloat16 and FP8 widened to float32 here.
            native = entry.dtype in ("float16", "float32", "float64")
            record = observe(entry.name, entry.raw() if native else entry.numpy(),
                             observer, args)
            record["dtype"] = entry.dtype
            records.append(record)
        except _EXPECTED as exc:
            errors.append((entry.name, _one_line(exc)))
    return records


def _dask_locators(args, source):
    """Where each tensor of ``source`` is found again in a Dask worker (in order)."""
    if source.kind == "builtin":
        return [_dask_report.ArrayTensor(e.name, e.shape, e.dtype, e.raw())
                for e in source.tensors]
    if source.kind == "minilm":
        paths, prefix = [examples.minilm_path()], False
    else:
        paths, prefix = args.files, len(args.files) > 1
    include, exclude = _patterns(args.include), _patterns(args.exclude)
    locators = []
    for path in paths:
        try:  # named as _load_file names them
            named = prefix or checkpoint.detect_kind(path) in ("npy", "npz")
            names = [e.name for e in checkpoint.open_checkpoint(
                path, include, exclude, prefix_names=named).tensors]
        except Exception:  # (its error is in source.errors already)
            continue
        locators += [_dask_report.FileTensor(path, name, named) for name in names]
    return locators


def _dask_report_run(args, source, chosen):
    """The report of ``source`` computed on the cluster of ``--dask``."""
    try:
        with _dask_report.cluster_client(args.dask, args.dask_workers) as client:
            return _dask_report.report(_dask_locators(args, source), source.description,
                                       source.skipped, chosen, args.nonfinite, client)
    except _dask_report.ClusterError as exc:
        raise CliError(str(exc)) from None


def run(args, out=None, err=None) -> int:
    """Run the command for parsed ``args``, writing to ``out``/``err`` (default: the
    process's stdout and stderr); returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.list_recipes:
        return _list_recipes(out)
    oneflow_given = _oneflow_given(args)
    _fill_defaults(args)
    observer = make_observer(args)
    if args.gpu:
        check_gpu()
    chosen = [] if args.scales else _recipes(args)
    source = collect_source(args)
    errors = list(source.errors)
    records = None
    if args.scales or (args.json and (oneflow_given or args.gpu)):
        records = _observe_all(source, observer, args, errors)
    rep = None
    if args.dask is not None and args.scales:
        raise CliError("--dask runs the report; it does not apply to --scales")
    if args.dask is not None:
        rep = _dask_report_run(args, source, chosen)
        errors += rep.errors
    elif not args.scales:
        progress = args.progress if args.progress is not None else err.isatty()
        rep = model_report.report(
            checkpoint.Checkpoint(source.description, source.tensors, source.skipped),
            chosen, nonfinite=args.nonfinite, progress=err if progress else False,
            device="cuda" if args.gpu else "cpu")
        errors += rep.errors
    # One line per failing tensor (the JSON lists every error).
    shown = set()
    for name, message in errors:
        if name not in shown:
            shown.add(name)
            print(f"{PROG}: error: {name}: {message}", file=err)
    unique_errors = list(dict.fromkeys(errors))
    if args.json:
        doc = {"source": source.kind, "description": source.description,
               "settings": _settings_doc(args)}
        if rep is not None:
            doc.update(rep.to_dict())
            doc["description"] = source.description
        else:
            doc["skipped"] = [{"name": n, "reason": m} for n, m in source.skipped]
        if records is not None:
            doc["arrays"] = records
        doc["errors"] = [{"name": n, "message": m} for n, m in unique_errors]
        json.dump(doc, out, indent=2)
        out.write("\n")
    elif args.scales:
        if source.kind != "files":
            print(f"{PROG}: {source.description}", file=out)
        print(f"settings: {_settings_text(args)}", file=out)
        if records:
            print(file=out)
            for line in _table(records, args.per_channel):
                print(line, file=out)
        for name, reason in source.skipped:
            print(f"skipped {name}: {reason}", file=out)
    elif source.tensors or not errors:   # (nothing read at all: the errors say why)
        print(f"{PROG}: {source.description}", file=out)
        out.write(rep.to_text())
    if rep is not None and args.output:
        rep.save(args.output)
        if not args.json:
            print(f"report written to {args.output}", file=out)
    return 1 if errors else 0


def _notices_as_lines(show):
    """``warnings.showwarning`` that prints the kernels' first-compile notice as one line
    of this program on stderr (a warning would also show the library's source line);
    other warnings go to ``show``."""
    def show_warning(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "CompileNotice":
            text = str(message).removeprefix("numba_quant: ")
            print(f"{PROG}: {text}", file=sys.stderr)
            return
        show(message, category, filename, lineno, file, line)
    return show_warning


def main(argv=None) -> int:
    """Entry point of ``numba-quant`` and ``python -m numba_quant``; returns the exit
    status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quantize"]:   # numba-quant quantize MODEL_DIR OUT_DIR --scheme ...
        return export_cli.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():   # (restores showwarning afterwards)
            warnings.showwarning = _notices_as_lines(warnings.showwarning)
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
