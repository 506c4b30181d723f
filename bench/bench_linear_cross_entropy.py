"""`drvoice-lab bench linear_cross_entropy`, as a script (same options; `--help` lists them)."""

import sys

from drvoice_lab.benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main(["linear_cross_entropy", *sys.argv[1:]]))
