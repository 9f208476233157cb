"""``numba-quant quantize``: the command behind :mod:`numba_quant.export`.

* ``numba-quant quantize MODEL_DIR OUT_DIR --scheme SCHEME``: a Hugging Face model
  directory to compressed-tensors (:func:`~numba_quant.export.to_compressed_tensors`);
* ``numba-quant quantize IN.gguf OUT.gguf --type TYPE``: a GGUF file to one of
  llama-quantize's file types (:func:`~numba_quant.export.to_gguf`).

Prints the table of what was written (per quantized weight: bytes in and out, bits per
weight, SQNR measured from the written bytes) and the totals; ``--json`` prints it as
JSON instead, ``-o FILE`` also saves it (JSON for ``.json``, text otherwise).  Bad input
ends with one line on stderr naming the file or tensor and exit status 1 (2 for a usage
error), with nothing left at the output path.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from numba_quant.reporting import dask_report
from numba_quant.reporting.checkpoint import CheckpointError
from numba_quant.export import ExportError, OutputExistsError, to_compressed_tensors
from numba_quant.export.compressed_tensors import SCHEMES
from numba_quant.export.gguf_file import to_gguf
from numba_quant.export.gguf_rules import FILE_TYPES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numba-quant quantize",
        description="Write a quantized model: a Hugging Face model directory to "
                    "compressed-tensors with --scheme (byte for byte llmcompressor 0.14's "
                    "data-free oneshot), or a GGUF file to one of llama-quantize's file "
                    "types with --type (byte for byte llama-quantize's file).")
    p.add_argument("model_dir", metavar="INPUT",
                   help="a model directory (config.json and .safetensors weights) or a "
                        "GGUF file of F32/F16/BF16 tensors")
    p.add_argument("out_dir", metavar="OUTPUT", nargs="?",
                   help="the directory or GGUF file to write (none with --dry-run)")
    p.add_argument("--scheme", metavar="SCHEME", type=str.upper, choices=list(SCHEMES),
                   help="compressed-tensors: one of " + ", ".join(SCHEMES))
    g = p.add_argument_group("GGUF (llama-quantize's options)")
    g.add_argument("--type", dest="file_type", metavar="TYPE", type=str.upper,
                   help="the file type: " + ", ".join(FILE_TYPES)
                        + " (Q3_K, Q4_K, Q5_K mean their _M mixes)")
    g.add_argument("--imatrix", metavar="FILE",
                   help="llama-imatrix's importance matrix (GGUF or legacy .dat)")
    g.add_argument("--tensor-type", action="append", default=[], metavar="REGEX=TYPE",
                   help="the type of the tensors whose name matches REGEX (the first "
                        "match wins; repeatable)")
    g.add_argument("--output-tensor-type", metavar="TYPE", help="the type of output.weight")
    g.add_argument("--token-embedding-type", metavar="TYPE",
                   help="the type of token_embd.weight")
    g.add_argument("--pure", action="store_true",
                   help="the file type's own type for every converted tensor (no mixture)")
    g.add_argument("--leave-output-tensor", action="store_true",
                   help="copy output.weight unquantized")
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads (default: all)")
    g.add_argument("--gpu", action="store_true", help="quantize on the CUDA GPU")
    g.add_argument("--dry-run", action="store_true",
                   help="print each tensor's type and size and the file's size; quantize "
                        "and write nothing")

    p.add_argument("--ignore", action="append", default=[], metavar="NAME_OR_REGEX",
                   help="a Linear module to leave unquantized: its name, re:REGEX "
                        "(matched at the start of module names) or a class name "
                        "(repeatable)")
    p.add_argument("--targets", action="append", default=None, metavar="REGEX",
                   help="quantize the modules whose whole name matches REGEX instead of "
                        "the model's Linear layers (needed without transformers; "
                        "repeatable)")
    p.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--dask", metavar="SCHEDULER",
                   help="quantize on a Dask cluster (both formats): 'local' (a local "
                        "cluster of --dask-workers processes) or a scheduler address; the "
                        "input must be readable by the workers (needs the 'dask' extra)")
    p.add_argument("--dask-workers", type=int, default=2, metavar="N",
                   help="worker processes of --dask local (default: 2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-o", "--output", metavar="REPORT",
                   help="also write the report to this file (.json: JSON, else text)")
    return p


def main(argv=None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if (args.scheme is None) == (args.file_type is None):
        parser.print_usage(sys.stderr)
        print("numba-quant quantize: error: give --scheme SCHEME (a model directory to "
              "compressed-tensors) or --type TYPE (a GGUF file)", file=sys.stderr)
        return 2
    if args.out_dir is None and not (args.file_type and args.dry_run):
        parser.print_usage(sys.stderr)
        print("numba-quant quantize: error: OUTPUT is needed (only --type TYPE --dry-run "
              "goes without)", file=sys.stderr)
        return 2
    try:
        rep = _gguf(args) if args.file_type else _compressed(args)
    except (ExportError, CheckpointError, OutputExistsError, ValueError, OSError) as exc:
        print(f"numba-quant quantize: error: {exc}", file=sys.stderr)
        return 1
    text = rep.to_json() if args.json else rep.to_text()
    print(text)
    if args.output:
        path = Path(args.output)
        try:
            path.write_text((rep.to_json() if path.suffix == ".json" else rep.to_text())
                            + "\n")
        except OSError as exc:
            print(f"numba-quant quantize: error: {path}: cannot write the report: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


def _compressed(args):
    gguf_only = [flag for flag, value in (
        ("--imatrix", args.imatrix), ("--tensor-type", args.tensor_type),
        ("--output-tensor-type", args.output_tensor_type),
        ("--token-embedding-type", args.token_embedding_type), ("--pure", args.pure),
        ("--leave-output-tensor", args.leave_output_tensor), ("--threads", args.threads),
        ("--gpu", args.gpu), ("--dry-run", args.dry_run)) if value]
    if gguf_only:
        raise ExportError(f"{', '.join(gguf_only)}: GGUF options (with --type); "
                          "--scheme takes --ignore, --targets")
    if Path(args.model_dir).is_file():
        raise ExportError(f"{args.model_dir}: --scheme takes a model directory; a GGUF "
                          "file takes --type TYPE")
    return _on_cluster_if_asked(args, lambda client: to_compressed_tensors(
        args.model_dir, args.out_dir, args.scheme, ignore=args.ignore,
        targets=args.targets, force=args.force, client=client))


def _gguf(args):
    if args.ignore or args.targets:
        raise ExportError("--ignore and --targets are compressed-tensors options; a GGUF "
                          "file takes --tensor-type REGEX=TYPE")
    if args.threads is not None:
        import numba
        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"--threads {args.threads}: expected 1 to "
                             f"{numba.config.NUMBA_NUM_THREADS}")
        numba.set_num_threads(args.threads)
    if args.gpu and args.dask is not None:
        raise ValueError("--gpu and --dask cannot be combined")
    return _on_cluster_if_asked(args, lambda client: to_gguf(
        args.model_dir, args.out_dir, args.file_type, imatrix=args.imatrix,
        tensor_types=args.tensor_type, output_tensor_type=args.output_tensor_type,
        token_embedding_type=args.token_embedding_type, pure=args.pure,
        leave_output_tensor=args.leave_output_tensor, force=args.force,
        device="gpu" if args.gpu else "cpu", client=client, dry_run=args.dry_run))


def _on_cluster_if_asked(args, export):
    """``export(client)``: with the Dask client of ``--dask``, or None without it."""
    if args.dask is None:
        return export(None)
    try:
        with dask_report.cluster_client(args.dask, args.dask_workers) as client:
            return export(client)
    except dask_report.ClusterError as exc:
        raise ExportError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
