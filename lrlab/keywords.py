"""``-k`` expressions: select runs by id, as pytest selects tests."""

from __future__ import annotations

import re

from lrlab.errors import UsageError

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


def keyword_matcher(expr: str):
    """Compile a pytest-style ``-k`` expression over run ids.

    Words match as case-insensitive substrings of the run id; ``and``, ``or``, ``not``
    and parentheses combine them: ``-k "lr0.1 and not noise"``.
    """
    tokens = _TOKEN.findall(expr)
    if not tokens:
        raise UsageError("-k expression is empty")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or():
        left = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda s: a(s) or b(s))(left, right)
        return left

    def parse_and():
        left = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            left = (lambda a, b: lambda s: a(s) and b(s))(left, right)
        return left

    def parse_not():
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda s: not inner(s)
        return parse_atom()

    def parse_atom():
        tok = peek()
        if tok is None:
            raise UsageError(f"-k expression {expr!r} ends too early")
        take()
        if tok == "(":
            inner = parse_or()
            if peek() != ")":
                raise UsageError(f"-k expression {expr!r} misses a ')'")
            take()
            return inner
        if tok in (")", "and", "or"):
            raise UsageError(f"-k expression {expr!r}: unexpected '{tok}'")
        word = tok.lower()
        return lambda s: word in s.lower()

    matcher = parse_or()
    if pos != len(tokens):
        raise UsageError(f"-k expression {expr!r}: unexpected '{tokens[pos]}'")
    return matcher
