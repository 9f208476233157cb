"""The low-precision float formats: their names, codes and parameters.

Kept free of numba so that the public modules can check format names when
``numba_quant`` is imported; :mod:`numba_quant._reference.formats` reads the same table
(through :func:`params`) inside compiled code.

Every format is stored one element per byte (``uint8``), as its bit pattern in the low
bits: sign, exponent field, mantissa field.  ``bias`` is the exponent bias, so that a
normal number with exponent field ``E`` and mantissa field ``M`` is
``(1 + M / 2**mbits) * 2**(E - bias)`` and a subnormal one (``E == 0``) is
``M / 2**mbits * 2**(1 - bias)``.  E8M0 has no sign, no mantissa and no zero: code ``c``
is ``2**(c - 127)`` and 255 is NaN.
"""
from collections import namedtuple

Format = namedtuple("Format", "name code ebits mbits bias max emax max_code nan_code "
                              "inf_code signed")

# Codes used by the kernels; the order is part of no interface.
E4M3FN, E5M2, E3M2FN, E2M3FN, E2M1FN, E8M0FNU, INT8 = range(7)

# nan_code/inf_code -1: the format has none (fp6/fp4 have neither; overflow saturates).
FORMATS = {
    "float8_e4m3fn": Format("float8_e4m3fn", E4M3FN, 4, 3, 7, 448.0, 8, 0x7E, 0x7F, -1, True),
    "float8_e5m2": Format("float8_e5m2", E5M2, 5, 2, 15, 57344.0, 15, 0x7B, 0x7E, 0x7C, True),
    "float6_e3m2fn": Format("float6_e3m2fn", E3M2FN, 3, 2, 3, 28.0, 4, 0x1F, -1, -1, True),
    "float6_e2m3fn": Format("float6_e2m3fn", E2M3FN, 2, 3, 1, 7.5, 2, 0x1F, -1, -1, True),
    "float4_e2m1fn": Format("float4_e2m1fn", E2M1FN, 2, 1, 1, 6.0, 2, 0x7, -1, -1, True),
    "float8_e8m0fnu": Format("float8_e8m0fnu", E8M0FNU, 8, 0, 127, 2.0 ** 127, 127, 0xFE, 0xFF,
                             -1, False),
}
# OCP MXINT8: two's complement int8 codes k meaning k / 64 (|k| <= 127), emax 0.
MXINT8 = Format("int8", INT8, 0, 6, 0, 127.0 / 64.0, 0, 127, -1, -1, True)

ELEMENT_FORMATS = tuple(n for n in FORMATS if n != "float8_e8m0fnu")
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
MX_FORMATS = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
              "float4_e2m1fn", "int8")

# Everything the kernels need about a format, by code, as a tuple of ints:
# (ebits, mbits, bias, max_code, nan_code, inf_code, signed).  MXINT8's row only keeps
# the table indexable by every code (its elements are not float codes).
PARAMS = tuple((f.ebits, f.mbits, f.bias, f.max_code, f.nan_code, f.inf_code, int(f.signed))
               for f in sorted(list(FORMATS.values()) + [MXINT8], key=lambda f: f.code))


def by_name(name):
    return MXINT8 if name == "int8" else FORMATS[name]
