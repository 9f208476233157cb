"""Writing quantized models that runtimes load.

:func:`to_compressed_tensors` writes a Hugging Face model directory quantized with one of
compressed-tensors' data-free presets, byte for byte what llmcompressor 0.14
(compressed-tensors 0.19) writes with ``oneshot(model, recipe=QuantizationModifier(
targets="Linear", scheme=SCHEME, ignore=IGNORE))`` and ``save_pretrained(out,
save_compressed=True)``.  The arithmetic of each scheme is described in
:mod:`numba_quant.export.compressed_tensors`.

Tensors are read from memory maps and written one run of rows at a time
(:mod:`numba_quant.export.safetensors_out`): memory stays near one tensor's outputs plus
a fixed buffer, whatever the model's size.

:func:`to_gguf` (:mod:`numba_quant.export.gguf_file`) writes a GGUF model quantized to
one of llama-quantize's file types, byte for byte the file ``llama-quantize`` writes.
"""
from numba_quant.export.report import ExportError, ExportReport, TensorRow
from numba_quant.export.safetensors_out import OutputExistsError
from numba_quant.export.compressed_tensors import SCHEMES
from numba_quant.export.compressed_export import to_compressed_tensors
from numba_quant.export.gguf_file import to_gguf

__all__ = ["to_compressed_tensors", "to_gguf", "ExportReport", "ExportError",
           "OutputExistsError", "SCHEMES", "TensorRow"]
