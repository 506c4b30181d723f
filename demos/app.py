"""The DrVoice voice chat in the browser: `python demos/app.py [--port 7860 ...]`.

The same as `drvoice-lab demo`; the app itself lives in `drvoice_lab/demo.py`.
"""

import sys

from drvoice_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
