"""The extension's .pyi stub lists exactly what the binary exports (names, classes, methods, signatures)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nanobpe
from nanobpe import _nanobpe

STUB = Path(nanobpe.__file__).with_name("_nanobpe.pyi")


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_module_level_names_match():
    tree = stub_tree()
    declared = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
    actual = public(dir(_nanobpe)) - {"_nanobpe"}
    assert declared == actual


def test_class_members_and_signatures_match():
    tree = stub_tree()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name in ("NanobpeError", "DataError"):
            continue
        cls = getattr(_nanobpe, node.name)
        declared = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} - {"__init__"}
        assert declared == public(vars(cls)) - {"__new__"}, node.name
        for f in node.body:
            if not isinstance(f, ast.FunctionDef) or f.name == "__init__":
                continue
            member = inspect.getattr_static(cls, f.name)
            if isinstance(member, (staticmethod,)):
                member = member.__func__
            try:
                sig = inspect.signature(getattr(cls, f.name))
            except (TypeError, ValueError):
                continue  # properties have no signature
            stub_params = [a.arg for a in f.args.args + f.args.kwonlyargs if a.arg != "self"]
            assert [p for p in sig.parameters if p != "self"] == stub_params, f"{node.name}.{f.name}"


def test_function_signatures_match():
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            sig = inspect.signature(getattr(_nanobpe, node.name))
            stub_params = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert list(sig.parameters) == stub_params, node.name
            defaults_stub = len(node.args.defaults) + sum(d is not None for d in node.args.kw_defaults)
            defaults_real = sum(p.default is not inspect.Parameter.empty for p in sig.parameters.values())
            assert defaults_stub == defaults_real, node.name


def test_exceptions_are_value_errors():
    assert issubclass(_nanobpe.DataError, _nanobpe.NanobpeError)
    assert issubclass(_nanobpe.NanobpeError, ValueError)
