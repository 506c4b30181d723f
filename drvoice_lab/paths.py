"""Where drvoice-lab keeps things: shipped assets (in the package) and a writable cache."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"


def cache_dir(*parts: str) -> Path:
    """Writable cache (converted weights, built corpora): $DRVOICE_CACHE or ~/.cache/drvoice-lab."""
    root = Path(os.environ.get("DRVOICE_CACHE", Path.home() / ".cache" / "drvoice-lab"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
