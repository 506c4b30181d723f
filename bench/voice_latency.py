"""`drvoice-lab bench voice_latency`, as a script (same options; `--help` lists them)."""

import sys

from drvoice_lab.benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main(["voice_latency", *sys.argv[1:]]))
