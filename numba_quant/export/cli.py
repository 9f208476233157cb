"""``numba-quant quantize MODEL_DIR OUT_DIR --scheme SCHEME``: the command behind
:func:`numba_quant.export.to_compressed_tensors`.

Prints the table of what was written (per quantized weight: bytes in and out, bits per
weight, SQNR measured from the written bytes) and the totals; ``--json`` prints it as
JSON instead, ``-o FILE`` also saves it (JSON for ``.json``, text otherwise).  Bad input
ends with one line on stderr naming the file or tensor and exit status 1 (2 for a usage
error), with nothing left at OUT_DIR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from numba_quant.reporting.checkpoint import CheckpointError
from numba_quant.export import ExportError, OutputExistsError, to_compressed_tensors
from numba_quant.export.compressed_tensors import SCHEMES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numba-quant quantize",
        description="Write a Hugging Face model directory quantized to compressed-tensors "
                    "(byte for byte llmcompressor 0.14's data-free oneshot).")
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="a model directory: config.json and .safetensors weights")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the directory to write")
    p.add_argument("--scheme", required=True, metavar="SCHEME", type=str.upper,
                   choices=list(SCHEMES), help="one of " + ", ".join(SCHEMES))
    p.add_argument("--ignore", action="append", default=[], metavar="NAME_OR_REGEX",
                   help="a Linear module to leave unquantized: its name, re:REGEX "
                        "(matched at the start of module names) or a class name "
                        "(repeatable)")
    p.add_argument("--targets", action="append", default=None, metavar="REGEX",
                   help="quantize the modules whose whole name matches REGEX instead of "
                        "the model's Linear layers (needed without transformers; "
                        "repeatable)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
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
    try:
        rep = to_compressed_tensors(args.model_dir, args.out_dir, args.scheme,
                                    ignore=args.ignore, targets=args.targets,
                                    force=args.force)
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


if __name__ == "__main__":
    sys.exit(main())
