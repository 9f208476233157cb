"""What an export wrote: one row per quantized tensor and the totals, as text or JSON.

Shared by :func:`numba_quant.export.to_compressed_tensors` and
:func:`numba_quant.export.to_gguf`; every number is measured from the bytes written.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_quant._host.json_values import json_number

__all__ = ["ExportError", "TensorRow", "ExportReport", "sqnr_db"]


class ExportError(ValueError):
    """An input that cannot be exported; the message names the file or tensor."""


@dataclass
class TensorRow:
    """One quantized weight in the report: measured from the bytes written."""
    name: str
    shape: tuple
    dtype: str
    input_bytes: int
    output_bytes: int
    sqnr_db: float
    signal: float = field(default=0.0, repr=False)     # sum x^2
    noise: float = field(default=0.0, repr=False)      # sum (decoded - x)^2

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.output_bytes / max(1, int(np.prod(self.shape)))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                "bits_per_weight": self.bits_per_weight,
                "sqnr_db": json_number(self.sqnr_db)}


@dataclass
class ExportReport:
    """What :func:`to_compressed_tensors` wrote.

    Attributes
    ----------
    scheme : str
    model_dir, out_dir : pathlib.Path
    tensors : list of TensorRow
        The quantized weights: shape, input and output bytes (the weight against all the
        tensors that replace it), bits per weight, and the SQNR (dB) of the weight
        decoded from the written bytes against the input weight.
    ignored : list of str
        Linear modules left unquantized (``quantization_config["ignore"]``).
    dropped : list of str
        Input tensors not written (buffers the model does not save, such as BERT's
        ``position_ids`` under transformers 5).
    input_bytes, output_bytes : int
        The sizes of the input and output files (of the output that would be written,
        for a dry run).
    quantized_weights : int
        Elements of the quantized weights.
    seconds : float
    dry_run : bool
        Planned only: nothing was quantized or written, and the SQNR is NaN.
    notes : list of str
        What a dry run found that would stop the export (a missing importance matrix).
    """
    scheme: str
    model_dir: Path
    out_dir: Path
    tensors: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    input_bytes: int = 0
    output_bytes: int = 0
    quantized_weights: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    notes: list = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        """Bits per quantized weight, scales and zero points included."""
        out = sum(t.output_bytes for t in self.tensors)
        return 8.0 * out / max(1, self.quantized_weights)

    @property
    def sqnr_db(self) -> float:
        """The SQNR over all quantized weights together (total signal / total noise)."""
        return sqnr_db(sum(t.signal for t in self.tensors),
                     sum(t.noise for t in self.tensors))

    def to_dict(self) -> dict:
        if self.dry_run:        # nothing measured: null rather than a computed "nan"
            return dict(self._dict(), sqnr_db=None,
                        tensors=[dict(t.to_dict(), sqnr_db=None) for t in self.tensors])
        return self._dict()

    def _dict(self) -> dict:
        return {"scheme": self.scheme, "model_dir": str(self.model_dir),
                "out_dir": str(self.out_dir), "input_bytes": self.input_bytes,
                "output_bytes": self.output_bytes,
                "quantized_weights": self.quantized_weights,
                "bits_per_weight": self.bits_per_weight,
                "sqnr_db": json_number(self.sqnr_db), "ignored": list(self.ignored),
                "dropped": list(self.dropped), "seconds": self.seconds,
                "dry_run": self.dry_run, "notes": list(self.notes),
                "tensors": [t.to_dict() for t in self.tensors]}

    def to_json(self, indent=1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self) -> str:
        header = ("tensor", "shape", "dtype", "in bytes", "out bytes", "bits/w", "SQNR dB")
        rows = [(t.name, "x".join(str(n) for n in t.shape), t.dtype, str(t.input_bytes),
                 str(t.output_bytes), f"{t.bits_per_weight:.3f}",
                 "-" if self.dry_run else f"{t.sqnr_db:.2f}")
                for t in self.tensors]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        target = "dry run, nothing written" if self.dry_run else self.out_dir
        lines = [f"{self.scheme}: {self.model_dir} -> {target}"]
        for r in [header] + rows:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))))
        quality = "" if self.dry_run else f", SQNR {self.sqnr_db:.2f} dB"
        lines.append(f"input {self.input_bytes} bytes, output {self.output_bytes} bytes "
                     f"({self.output_bytes / max(1, self.input_bytes):.3f}x); "
                     f"{self.quantized_weights} quantized weights at "
                     f"{self.bits_per_weight:.3f} bits per weight{quality}; "
                     f"{self.seconds:.2f} s")
        if self.ignored:
            lines.append("left unquantized: " + ", ".join(self.ignored))
        if self.dropped:
            lines.append("not saved by the model: " + ", ".join(self.dropped))
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def sqnr_db(signal, noise):
    """10 log10(signal / noise), with the limits of a zero signal or noise."""
    if signal == 0:
        return math.nan if noise == 0 else -math.inf
    if noise == 0:
        return math.inf
    return 10.0 * math.log10(signal / noise)
