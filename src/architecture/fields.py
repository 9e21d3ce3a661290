"""Reading JSON values into typed values, with one-line errors that name the field.

`FieldError` is the genotype's error: "genotype field 'parts[1].fabric.cells[2].inputs': <what is wrong>".
`SpecError` is a broken structural rule of a spec built in code or parsed (its `field` is relative to the
spec; the parser prefixes it). The `as_*` functions check one value (type first, so unhashable or
non-finite values never reach a lookup or a constructor; bools are not numbers); `Obj` checks the keys of
an object (required ones present, no unknown ones) and reads its fields.
"""
import json
import math
from typing import Any, Dict, List, Optional, Sequence

from src.architecture.limits import MAX_NAME_LEN


class FieldError(ValueError):
    """A malformed genotype field."""

    def __init__(self, field: str, msg: str):
        self.field, self.msg = field, msg
        super().__init__(f"genotype field '{field}': {msg}")


class SpecError(ValueError):
    """A spec that breaks a structural rule: `field` is where (relative to the spec), str(self) the rule."""

    def __init__(self, field: str, msg: str):
        self.field = field
        super().__init__(msg)


def join(path: str, key) -> str:
    """The path of `key` (an object key, or a list index when an int) under `path`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = json.dumps(str(key))[1:-1][:MAX_NAME_LEN]  # a key from the file: escaped, so the message stays one line
    return f"{path}.{key}" if path else key


def kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def shown(value) -> str:
    """A short, one-line rendering of a value for a message (strings quoted and escaped as Python does)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_error(field: str, want: str, value) -> FieldError:
    return FieldError(field, f"must be {want}, got {kind(value)} {shown(value)}")


def as_int(value, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error(field, "int", value)
    if not lo <= value <= hi:
        raise FieldError(field, f"must be in {lo}..{hi}, got {value}")
    return value


def as_num(value, field: str, lo: float, hi: float = math.inf) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _type_error(field, "a number", value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise FieldError(field, f"must be a finite number in [{lo}, {hi}], got {value}")
    return float(value)


def as_str(value, field: str, choices: Optional[Sequence[str]] = None, max_len: int = MAX_NAME_LEN) -> str:
    if not isinstance(value, str):
        raise _type_error(field, "a string", value)
    if choices is not None and value not in choices:
        raise FieldError(field, f"{shown(value)} is not one of {list(choices)}")
    if not 0 < len(value) <= max_len:
        raise FieldError(field, f"must be 1 to {max_len} characters, got {len(value)}")
    return value


def as_bool(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(field, "true or false", value)
    return value


def as_obj(value, field: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise _type_error(field, "an object", value)
    return value


def as_list(value, field: str, max_len: int, min_len: int = 0) -> list:
    if not isinstance(value, list):
        raise _type_error(field, "a list", value)
    if not min_len <= len(value) <= max_len:
        raise FieldError(field, f"must have {min_len} to {max_len} items, got {len(value)}")
    return value


def _items(values: list, field: str, check, distinct: bool) -> list:
    """`check(v, f)` on every item; an item's error names the list (the whole list is the field)."""
    out = []
    for i, v in enumerate(values):
        try:
            out.append(check(v, field))
        except FieldError as exc:
            raise FieldError(field, f"item {i}: {exc.msg}") from None
    if distinct and len(set(out)) != len(out):
        raise FieldError(field, f"items must be distinct, got {shown(values)}")
    return out


def as_ints(value, field: str, lo: int, hi: int, max_len: int, min_len: int = 0, distinct: bool = False) -> List[int]:
    return _items(as_list(value, field, max_len, min_len), field, lambda v, f: as_int(v, f, lo, hi), distinct)


def as_nums(value, field: str, lo: float, max_len: int, min_len: int = 0) -> List[float]:
    return _items(as_list(value, field, max_len, min_len), field, lambda v, f: as_num(v, f, lo), False)


def as_strs(value, field: str, max_len: int, min_len: int = 0, choices: Optional[Sequence[str]] = None,
            distinct: bool = False) -> List[str]:
    return _items(as_list(value, field, max_len, min_len), field, lambda v, f: as_str(v, f, choices), distinct)


def as_bools(value, field: str, max_len: int, min_len: int = 0) -> List[bool]:
    return _items(as_list(value, field, max_len, min_len), field, as_bool, False)


def check_format(value, path: str, expected: str) -> None:
    """The object at `path` declares `"format": expected` (checked before its other keys)."""
    d = as_obj(value, path)
    field = join(path, "format")
    if "format" not in d:
        raise FieldError(field, "missing")
    if d["format"] != expected:
        raise FieldError(field, f"{shown(d['format'])} is not '{expected}'")


class Obj:
    """A JSON object with exactly the keys `required` (+ any of `optional`), read field by field."""

    def __init__(self, value, path: str, required: Sequence[str], optional: Sequence[str] = ()):
        self.d, self.path = as_obj(value, path), path
        for key in required:
            if key not in self.d:
                raise FieldError(self.field(key), "missing")
        known = list(required) + list(optional)
        for key in self.d:
            if key not in known:
                raise FieldError(self.field(key), f"unknown field (known: {', '.join(known)})")

    def field(self, key) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.d

    def raw(self, key: str):
        return self.d[key]

    def integer(self, key: str, lo: int, hi: int) -> int:
        return as_int(self.d[key], self.field(key), lo, hi)

    def number(self, key: str, lo: float, hi: float = math.inf) -> float:
        return as_num(self.d[key], self.field(key), lo, hi)

    def string(self, key: str, choices: Optional[Sequence[str]] = None) -> str:
        return as_str(self.d[key], self.field(key), choices)

    def boolean(self, key: str) -> bool:
        return as_bool(self.d[key], self.field(key))

    def array(self, key: str, max_len: int, min_len: int = 0) -> list:
        return as_list(self.d[key], self.field(key), max_len, min_len)

    def mapping(self, key: str) -> Dict[str, Any]:
        return as_obj(self.d[key], self.field(key))

    def integers(self, key: str, lo: int, hi: int, max_len: int, min_len: int = 0, distinct: bool = False) -> List[int]:
        return as_ints(self.d[key], self.field(key), lo, hi, max_len, min_len, distinct)

    def numbers(self, key: str, lo: float, max_len: int, min_len: int = 0) -> List[float]:
        return as_nums(self.d[key], self.field(key), lo, max_len, min_len)

    def strings(self, key: str, max_len: int, min_len: int = 0, choices: Optional[Sequence[str]] = None,
                distinct: bool = False) -> List[str]:
        return as_strs(self.d[key], self.field(key), max_len, min_len, choices, distinct)

    def booleans(self, key: str, max_len: int, min_len: int = 0) -> List[bool]:
        return as_bools(self.d[key], self.field(key), max_len, min_len)
