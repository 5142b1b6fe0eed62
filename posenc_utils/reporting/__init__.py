"""Reporting: what reads the studies' products: figures, claims report, README sections, benchmark, comparison."""
