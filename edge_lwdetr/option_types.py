"""Parsers for option values: each accepts a valid value or says, in one line, what is valid (argparse prints it)."""

from __future__ import annotations

import argparse
import math

# The largest input side accepted: attention memory grows with the fourth power of the side (the ViT's global
# blocks hold a (side/16)^4 attention map per head: 3 GiB per map at 2048 px for LW-DETR-tiny), beyond any Jetson.
MAX_IMAGE_SIZE = 2048


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def image_size(text: str) -> int:
    size = _number(text, int)
    if not 64 <= size <= MAX_IMAGE_SIZE or size % 64:
        lower = min(max(64, size // 64 * 64), MAX_IMAGE_SIZE - 64)
        raise argparse.ArgumentTypeError(
            f"{size} is not a multiple of 64 between 64 and {MAX_IMAGE_SIZE}: LW-DETR splits its 1/16 token grid into "
            f"4x4 windows (use {lower} or {lower + 64}); larger sides need more memory than any Jetson has"
        )
    return size


def at_least(minimum: int):
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}: it must be an integer >= {minimum}")
        return value

    return parse


def in_unit_interval(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside [0, 1]")
    return value


def positive(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be above 0")
    return value


def batch_profile(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,OPT,MAX such as 1,4,8") from None
    if not 1 <= lo <= opt <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def int8_budget(text: str) -> float | None:
    """AP points (>= 0), or 'off' for an all-INT8 graph without the sensitivity measure."""
    if text == "off":
        return None
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is below 0: give AP points >= 0, or off")
    return value
