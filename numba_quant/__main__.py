"""``python -m numba_quant``: the command line of :mod:`numba_quant.cli`."""
import sys

from numba_quant.cli import main

if __name__ == "__main__":
    sys.exit(main())
