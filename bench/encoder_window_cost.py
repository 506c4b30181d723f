"""`drvoice-lab bench encoder_window`, as a script (same options; `--help` lists them)."""

import sys

from drvoice_lab.benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main(["encoder_window", *sys.argv[1:]]))
