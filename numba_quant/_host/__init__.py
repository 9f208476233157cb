"""Host-side helpers without kernels: argument checks and messages, codes, layouts, plans, tuning, storage formats."""
