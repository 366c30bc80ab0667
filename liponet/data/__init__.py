"""PDEBench layouts: streaming HDF5 reader and batched generators (no network code here)."""

__all__: list[str] = []
