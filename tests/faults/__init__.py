"""The fault, load and abuse suite (issue 6). `test_fault_matrix.py` is its fault matrix."""
