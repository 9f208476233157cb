"""The checkpoint report: readers, recipes, the report, its rendering and the ``numba-quant`` command."""
