"""argparse value types shared by every ``drvoice-lab`` command: numbers in range, or a usage
error (exit code 2) that says what was expected."""

from __future__ import annotations

import argparse
import math


def int_at_least(low: int):
    """argparse type: an integer >= ``low`` (otherwise a usage error, exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def float_in(low: float, high: float = math.inf, low_open: bool = False):
    """argparse type: a finite float in [low, high] (``low_open``: (low, high])."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else None

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            need = f"in {shown}" if shown else f"{'>' if low_open else '>='} {low:g}"
            raise argparse.ArgumentTypeError(f"must be a number {need}, got {text}")
        return value

    return parse
