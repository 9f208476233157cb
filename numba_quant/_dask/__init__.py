"""Dask arrays: graphs whose tasks run the in-memory functions chunk by chunk."""
