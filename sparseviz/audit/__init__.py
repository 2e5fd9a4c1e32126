"""Loops over many photos: the audit (local or on Ray), its inputs and reports, the benchmark, experiments."""
