"""Resource quantities ("100m", "1Gi", "0.5", "12e6") with upstream's parsing, arithmetic and canonical form.

Semantics are those of apimachinery's `resource.Quantity`: the value is exact (never a float),
rounded up to the nearest nano unit when parsed, and printed in canonical form — the largest
suffix of the format the user wrote that loses no precision and leaves no fractional digits
("1.5" prints as "1500m", "1.5Gi" as "1536Mi", "1000" as "1k"). The format a quantity was written
in (binary `Ki`, decimal `k`, or exponent `e3`) is remembered and reused when it is printed.
"""
from __future__ import annotations

import functools
import re

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

SPLIT_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_SPLIT = re.compile(SPLIT_RE)

_NANO = 9  # the smallest representable unit is 1n = 10^-9
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_BY_EXP = {v: k for k, v in _BINARY.items()}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}


class QuantityError(ValueError):
    """A string that is not a quantity; the message is upstream's."""


def _interpret(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) of a suffix, as upstream's suffixer reads it."""
    if suffix in _BINARY:
        return 2, _BINARY[suffix], BINARY_SI
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix], DECIMAL_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            return 10, int(suffix[1:]), DECIMAL_EXPONENT
        except ValueError:
            pass
    raise QuantityError("unable to parse quantity's suffix")


@functools.total_ordering
class Quantity:
    """An exact quantity: `nanos` is the value in units of 10^-9; `format` how to print it."""

    __slots__ = ("nanos", "format")

    def __init__(self, nanos: int = 0, format: str = DECIMAL_SI):
        self.nanos = nanos
        self.format = format

    @classmethod
    def parse(cls, text) -> "Quantity":
        """A quantity from its string form (JSON numbers are accepted too, as upstream's decoder does)."""
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise QuantityError(f"quantities must match the regular expression '{SPLIT_RE}'")
        text = str(text).strip() if not isinstance(text, str) else text
        match = _SPLIT.match(text)
        if not match or text.count(".") > 1:
            raise QuantityError(f"quantities must match the regular expression '{SPLIT_RE}'")
        number, suffix = match.groups()
        base, exponent, fmt = _interpret(suffix)
        negative = number.startswith("-")
        whole, _, fraction = number.lstrip("+-").partition(".")
        # value = digits * 10^-len(fraction) * base^exponent, kept as a fraction num/den
        num = int((whole + fraction) or "0")
        den = 10 ** len(fraction)
        if base == 2:
            num *= 1 << exponent
        elif exponent >= 0:
            num *= 10 ** exponent
        else:
            den *= 10 ** -exponent
        # nanos, rounded away from zero: if you ask for some resource you get some
        nanos = -(-num * 10 ** _NANO // den)
        if fmt == BINARY_SI and 0 < nanos < 10 ** _NANO:
            fmt = DECIMAL_SI
        return cls(-nanos if negative else nanos, fmt)

    @classmethod
    def from_int(cls, value: int, format: str = DECIMAL_SI) -> "Quantity":
        return cls(value * 10 ** _NANO, format)

    @classmethod
    def from_milli(cls, value: int, format: str = DECIMAL_SI) -> "Quantity":
        return cls(value * 10 ** (_NANO - 3), format)

    def value(self) -> int:
        """The value rounded up to an integer, as upstream's Value()."""
        return -(-self.nanos // 10 ** _NANO)

    def milli_value(self) -> int:
        """The value in thousandths, rounded up, as upstream's MilliValue()."""
        return -(-self.nanos // 10 ** (_NANO - 3))

    def is_zero(self) -> bool:
        return self.nanos == 0

    def sign(self) -> int:
        return (self.nanos > 0) - (self.nanos < 0)

    def __add__(self, other: "Quantity") -> "Quantity":
        return Quantity(self.nanos + other.nanos, other.format if self.nanos == 0 else self.format)

    def __sub__(self, other: "Quantity") -> "Quantity":
        return Quantity(self.nanos - other.nanos, other.format if self.nanos == 0 else self.format)

    def __neg__(self) -> "Quantity":
        return Quantity(-self.nanos, self.format)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.nanos == other.nanos

    def __lt__(self, other: "Quantity") -> bool:
        return self.nanos < other.nanos

    def __hash__(self) -> int:
        return hash(self.nanos)

    def __str__(self) -> str:
        if self.nanos == 0:
            return "0"
        sign = "-" if self.nanos < 0 else ""
        magnitude = abs(self.nanos)
        fmt = self.format
        if fmt == BINARY_SI and (magnitude < 1024 * 10 ** _NANO or magnitude % 10 ** _NANO):
            # small or fractional binary values would round; show them exactly in decimal
            fmt = DECIMAL_SI
        if fmt == BINARY_SI:
            mantissa, exponent = magnitude // 10 ** _NANO, 0
            while mantissa % 1024 == 0 and exponent < 60:
                mantissa //= 1024
                exponent += 10
            return f"{sign}{mantissa}{_BINARY_BY_EXP.get(exponent, '')}"
        mantissa, exponent = magnitude, -_NANO
        while mantissa % 1000 == 0 and (fmt == DECIMAL_EXPONENT or exponent < 18):
            mantissa //= 1000
            exponent += 3
        if fmt == DECIMAL_EXPONENT:
            return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
        return f"{sign}{mantissa}{_DECIMAL_BY_EXP[exponent]}"

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"


def parse_quantity(text) -> Quantity:
    return Quantity.parse(text)


ZERO = Quantity()
