"""Numbers for JSON output (the report's and the exports')."""
import math


def json_number(v):
    """JSON has no NaN or infinity: those become the strings "nan", "inf", "-inf"."""
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v
