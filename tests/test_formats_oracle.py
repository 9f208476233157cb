"""The format oracle (tests/oracle_formats.py) reproduces every golden case: it is a
valid reference for the property tests."""
import numpy as np
import pytest

import oracle_formats as orc
from test_formats_golden import CASES, assert_bits, case_input, data


@pytest.mark.parametrize("op", ["mx_quant", "nvfp4_quant", "fp8_current_scaling"])
def test_oracle_reproduces_golden(op):
    for c in CASES:
        if c["op"] != op:
            continue
        x = case_input(c).astype(np.float32)
        d = data()
        if op == "mx_quant":
            s, el, deq = orc.mx_quantize(x, c["elem_dtype"], c["block_size"],
                                         c["scaling_mode"])
            got = {"scale_e8m0": s, "elements": el, "dequant": deq}
        elif op == "nvfp4_quant":
            pts = 1.0 if c["scaling"] == "single_level" else None
            bs, el, pts, deq = orc.nvfp4_quantize(x, pts)
            got = {"block_scale": bs, "elements": el, "dequant": deq,
                   "per_tensor_scale": np.float32(pts)}
        else:
            block = None if c["granularity"] == "tensor" else x.shape[-1]
            el, s, deq = orc.fp8_quantize(x, c["fp8_dtype"], block)
            got = {"elements": el, "dequant": deq,
                   "scale": s.reshape(d[f"{c['id']}/scale"].shape)}
        for name, value in got.items():
            assert_bits(np.asarray(value), d[f"{c['id']}/{name}"], f"{c['id']} {name}")
