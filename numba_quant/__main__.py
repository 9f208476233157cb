"""``python -m numba_quant``: the command line of :mod:`numba_quant.reporting.cli`."""
import sys

from numba_quant.reporting.cli import main

if __name__ == "__main__":
    sys.exit(main())
