"""`drvoice-lab bench srh_ungroup`, as a script (same options; `--help` lists them)."""

import sys

from drvoice_lab.benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main(["srh_ungroup", *sys.argv[1:]]))
