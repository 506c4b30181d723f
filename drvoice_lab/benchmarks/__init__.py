"""Benchmarks behind `drvoice-lab bench`: resolution compute (5 Hz vs 25 Hz), the latency
profile of a spoken turn, training throughput, and the machine's matmul ceiling."""
