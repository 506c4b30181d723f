"""Benchmarks behind `drvoice-lab bench` (suites listed in ``suites.py``) and
`drvoice-lab ablate`; every result row goes through ``report.append_rows``."""
