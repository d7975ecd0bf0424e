"""Numbers for people: the tables of decision.md, the report, the model cards and the UI's table artifacts show 3-4
significant digits; the JSON records keep full precision."""

from __future__ import annotations

import math

SIG = 3  # significant digits in tables


def human(x: float | int | None, sig: int = SIG, *, signed: bool = False) -> str:
    """``x`` with ``sig`` significant digits, as a plain decimal (0.0712, 0.400, 12.3, 1235) down to 1e-4, in
    scientific notation below (3.2e-07); "n/a" for None, "inf"/"-inf" for unbounded values. ``signed``: a leading
    "+" on positive numbers (differences)."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    plus = "+" if signed else ""
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -4:
        return f"{x:{plus}.{sig - 1}e}"
    decimals = max(sig - 1 - magnitude, 0)
    text = f"{x:{plus}.{decimals}f}"
    if decimals and abs(float(text)) >= 10.0 ** (magnitude + 1):  # rounding carried (0.09996 -> 0.1000)
        text = f"{x:{plus}.{decimals - 1}f}"
    return text


def rounded(x: float | int | None, sig: int = 4) -> float | int | None:
    """``x`` rounded to ``sig`` significant digits, still a number (table artifacts sort numbers); None, ints and
    non-finite values unchanged."""
    if x is None or isinstance(x, (bool, int)) or not math.isfinite(x):
        return x
    return float(f"{x:.{sig}g}")


def interval(ci: list[float] | tuple[float, float] | None, sig: int = SIG, *, signed: bool = False) -> str:
    """[lo, hi] for people; "n/a" when there is none."""
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{human(ci[0], sig, signed=signed)}, {human(ci[1], sig, signed=signed)}]"
