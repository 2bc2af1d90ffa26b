"""The extension's error classes. (The .pyi stub itself is checked against the built module by mypy's stubtest in
scripts/lint: names, signatures, defaults, classes.)"""

from __future__ import annotations

from nanobpe import _nanobpe


def test_exceptions_are_value_errors():
    assert issubclass(_nanobpe.DataError, _nanobpe.NanobpeError)
    assert issubclass(_nanobpe.NanobpeError, ValueError)
