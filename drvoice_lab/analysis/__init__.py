"""Analysis helpers behind the notebooks: figures of a turn and of the benchmarks, and the
kernels' agreement with their references. Notebooks orchestrate; the logic lives here."""
