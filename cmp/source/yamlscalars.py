"""Plain scalars as go-yaml resolves them (gopkg.in/yaml.v2 resolve.go, which Argo CD reads
plugin output with through sigs.k8s.io/yaml), and what every other reader could take them for.

go-yaml does not use YAML 1.1's regular expressions for numbers: it deletes every `_`, then asks
Go's strconv.ParseInt/ParseUint (base prefixes `0x`, `0o`, `0b`, a leading `0` for octal, a
sign), then ParseFloat behind a decimal pattern, then reads `0b` with a sign after the prefix.
So `+_1` is 1, `1e_3` is 1000.0, `0b-1` is -1, while `._5` and `1.5e400` (out of range) stay
strings and a 65-bit hex number is a string but a 65-bit decimal one a float. The functions
below repeat those steps; strconv's rules are written out because Python's int() and float()
accept more (spaces, underscores, `infinity`).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1

# resolve.go's resolveMap: YAML 1.1 bools (with y/n), nulls, .inf/.nan and the merge key.
_FIXED: dict[str, tuple[str, Any]] = {
    **{
        word: (BOOL, True)
        for word in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
    },
    **{
        word: (BOOL, False)
        for word in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
    },
    **{word: (NULL, None) for word in ("", "~", "null", "Null", "NULL")},
    **{word: (FLOAT, math.nan) for word in (".nan", ".NaN", ".NAN")},
    **{
        f"{sign}{word}": (FLOAT, math.inf)
        for sign in ("", "+")
        for word in (".inf", ".Inf", ".INF")
    },
    **{f"-{word}": (FLOAT, -math.inf) for word in (".inf", ".Inf", ".INF")},
    "<<": (MERGE, "<<"),
}
_NUMERIC_START = frozenset("+-0123456789.")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
# strconv.ParseFloat of text that starts with ".": Go literal syntax, where an underscore must
# sit between two digits (underscoreOK), so `.0_0` is 0.0 but `._5` and `.5_` are not numbers.
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+(?:_[0-9]+)*)?")
_DIGITS = {
    2: re.compile(r"[01]+"),
    8: re.compile(r"[0-7]+"),
    10: re.compile(r"[0-9]+"),
    16: re.compile(r"[0-9a-fA-F]+"),
}


def resolve_plain(text: str, *, v3: bool = False) -> tuple[str, Any]:
    """(tag, value) of a plain scalar as go-yaml v2 decodes it into interface{} (v3=True: as
    yaml.v3 does, which adds `0o` octals with a signed remainder). Timestamps stay strings, as
    go-yaml v2 leaves them in interface{} values (yaml.v3 would make them times: see
    `looks_like_timestamp`)."""
    fixed = _FIXED.get(text)
    if fixed is not None and (not v3 or fixed[0] != BOOL or text.lower() in ("true", "false")):
        return fixed
    if not text or text[0] not in _NUMERIC_START:
        return STR, text
    if text[0] == ".":
        if _DOT_FLOAT.fullmatch(text):
            number = float(text.replace("_", ""))
            if not math.isinf(number):
                return FLOAT, number
        return STR, text
    plain = text.replace("_", "")
    number_int = parse_int(plain, 0)
    if number_int is not None and INT64_MIN <= number_int <= INT64_MAX:
        return INT, number_int
    unsigned = parse_int(plain, 0, signed=False)
    if unsigned is not None and unsigned <= UINT64_MAX:
        return INT, unsigned
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        number = float(plain)
        if not math.isinf(number):  # strconv.ParseFloat: out of range is an error
            return FLOAT, number
    prefixes = [("0b", 2, ""), ("-0b", 2, "-")]
    if v3:
        prefixes += [("0o", 8, ""), ("-0o", 8, "-")]
    for prefix, base, sign in prefixes:
        if plain.startswith(prefix):
            value = _parse_fixed_base(sign + plain[len(prefix) :], base, sign == "")
            if value is not None:
                return INT, value
            if base == 2 and prefix == "0b":
                break  # "-0b" is tried only when "0b" is not the prefix
    return STR, text


def _parse_fixed_base(text: str, base: int, allow_unsigned: bool) -> int | None:
    value = parse_int(text, base)
    if value is not None and INT64_MIN <= value <= INT64_MAX:
        return value
    if allow_unsigned:
        unsigned = parse_int(text, base, signed=False)
        if unsigned is not None and unsigned <= UINT64_MAX:
            return unsigned
    return None


def parse_int(text: str, base: int, *, signed: bool = True) -> int | None:
    """strconv.ParseInt (signed) / ParseUint without the bit-size check: None on a syntax error.
    base 0 reads the prefixes 0b/0o/0x and a leading 0 as octal."""
    sign = 1
    if signed and text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if not text:
        return None
    if base == 0:
        base = 10
        if text[0] == "0":
            marker = text[1:2].lower()
            if len(text) >= 3 and marker in ("b", "o", "x"):
                base, text = {"b": 2, "o": 8, "x": 16}[marker], text[2:]
            else:
                base, text = 8, text[1:]
                if not text:
                    return 0
    if not _DIGITS[base].fullmatch(text):
        return None
    digits = text.lstrip("0")
    if len(digits) > 64:  # past 64 bits in any base; int() refuses 4,300 digits and more
        return sign * (UINT64_MAX + 1)
    return sign * int(digits or "0", base)


_TIMESTAMP_START = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:$|[Tt \t])")


def looks_like_timestamp(text: str) -> bool:
    """A superset of what yaml.v3 (time.Parse with one-digit fields), kustomize and YAML 1.1
    readers take for a timestamp."""
    return _TIMESTAMP_START.match(text) is not None


def key_text(key: Any) -> str:
    """A mapping key as sigs.k8s.io/yaml turns it into a JSON object key (integers in decimal,
    floats in Go's shortest 32-bit 'g' form, booleans as true/false). A null key is an error
    there ("Unsupported map key"), and so it is here."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        if not INT64_MIN <= key <= INT64_MAX:
            raise TypeError("an integer key beyond 64 bits")
        return str(key)
    if isinstance(key, float):
        return format_float32_g(key)
    raise TypeError(f"a {'null' if key is None else type(key).__name__} key")


def format_float32_g(number: float) -> str:
    """strconv.FormatFloat(number, 'g', -1, 32) with sigs.k8s.io/yaml's .inf/.nan spellings."""
    if math.isnan(number):
        return ".nan"
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:  # beyond float32's range rounds to infinity
        single = math.copysign(math.inf, number)
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    # The shortest decimal that reads back as the same float32.
    for digits in range(1, 10):
        text = f"{single:.{digits - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            break
    mantissa, exponent_text = text.split("e")
    exponent = int(exponent_text)
    significant = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    negative = mantissa.startswith("-")
    if exponent < -4 or exponent >= 6:  # Go's 'g' with the shortest precision: %e from 1e6
        head, tail = significant[0], significant[1:]
        body = f"{head}.{tail}" if tail else head
        return f"{'-' if negative else ''}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent >= len(significant) - 1:
        body = significant + "0" * (exponent - len(significant) + 1)
    elif exponent >= 0:
        body = f"{significant[: exponent + 1]}.{significant[exponent + 1 :]}"
    else:
        body = "0." + "0" * (-exponent - 1) + significant
    return f"{'-' if negative else ''}{body}"
