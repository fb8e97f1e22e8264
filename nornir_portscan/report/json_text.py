"""A run document as indented JSON, byte for byte what ``json.dump(doc, stream, indent=2,
default=str)`` writes, a host at a time and, where orjson is installed, about 20 times faster.

The standard library encodes in pure Python as soon as it indents: a run of 16,000 hosts
spent seconds there. orjson writes the same text for the values a host's Result holds
(str, int, bool, None, finite floats rounded to milliseconds, lists, dicts with str or int
keys), escaping aside: it writes non-ASCII characters and DEL as they are, where the
standard library escapes them (``ensure_ascii``), so those are escaped here the same way.
It differs elsewhere: floats below 1e-4 or from 1e16 up are written without Python's
exponent form, NaN as null, plain Enums by value, where ``default=str`` names them. So
only each host's entry goes through orjson, and only when its own fields are plain; the
rest of the document (options, summary: a few lines) goes through the standard library.

Each host's text is written as it is made: the document is never held twice in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import IO, Any

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # the standard library writes the same bytes, only slower
    _orjson = None

#: What ``ensure_ascii`` escapes that orjson leaves as it is (inside strings only: JSON's
#: structure is ASCII).
_NOT_ASCII = re.compile("[^\x00-\x7e]")
#: Host entries written at once.
_CHUNK = 256
#: The host fields orjson writes as json does, by type (the result is checked apart).
_PLAIN = frozenset({str, bool, int, type(None)})


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as json's py_encode_basestring_ascii writes it
    return f"\\u{0xd800 | (code >> 10) & 0x3ff:04x}\\u{0xdc00 | code & 0x3ff:04x}"


def _key(key: object) -> str:
    """A mapping key as json writes it: the scalar types converted, any other refused."""
    if isinstance(key, str):
        return json.dumps(key)
    if isinstance(key, (int, float)) or key is None:  # bool is an int: 'true', as json
        return json.dumps(json.dumps(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _stdlib(value: Any, indent: str, default: Callable[[Any], Any] | None) -> str:
    return json.dumps(value, indent=2, default=default).replace("\n", "\n" + indent)


def _fast(entry: Any, indent: str) -> str | None:
    """A host entry through orjson, or None when it holds anything orjson would write
    otherwise (the caller then takes the standard library)."""
    if _orjson is None or not isinstance(entry, dict):
        return None
    for field, value in entry.items():
        if type(field) is not str:
            return None
        if type(value) not in _PLAIN and not (field == "result" and type(value) is dict):
            return None
    try:
        data = _orjson.dumps(entry, option=_orjson.OPT_INDENT_2 | _orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError):  # a lone surrogate, an int beyond 64 bits ...
        return None
    text: str
    if data.isascii() and b"\x7f" not in data:
        text = data.decode("ascii")
    else:
        text = _NOT_ASCII.sub(_escape, data.decode("utf-8"))
    return text.replace("\n", "\n" + indent)


def dump(doc: Mapping[str, Any], stream: IO[str], *, hosts: str = "hosts",
         default: Callable[[Any], Any] | None = str) -> None:
    """Write ``doc`` as ``json.dump(doc, stream, indent=2, default=default)`` does, then a
    newline; the entries of ``doc[hosts]`` are written one at a time (see the module)."""
    if not isinstance(doc, dict) or not doc:
        json.dump(doc, stream, indent=2, default=default)
        stream.write("\n")
        return
    stream.write("{")
    first = True
    for key, value in doc.items():
        stream.write(("\n  " if first else ",\n  ") + _key(key) + ": ")
        first = False
        if key == hosts and isinstance(value, dict) and value:
            _dump_hosts(value, stream, default)
        else:
            stream.write(_stdlib(value, "  ", default))
    stream.write("\n}\n")


def _dump_hosts(hosts: dict[Any, Any], stream: IO[str],
                default: Callable[[Any], Any] | None) -> None:
    parts: list[str] = []
    separator = "{\n    "
    for name, entry in hosts.items():
        text = _fast(entry, "    ") or _stdlib(entry, "    ", default)
        parts.append(_key(name) + ": " + text)
        if len(parts) >= _CHUNK:
            stream.write(separator + ",\n    ".join(parts))
            separator, parts = ",\n    ", []
    if parts:
        stream.write(separator + ",\n    ".join(parts))
    stream.write("\n  }")
