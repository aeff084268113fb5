"""Build hook: compile the order path's hot modules with mypyc when possible.

The modules listed under ``[tool.datn] compiled-modules`` in pyproject.toml are
ordinary typed Python; mypyc (part of mypy) turns each into a C extension that
runs the same code about twice as fast. When no C compiler is found, or
``DATN_PURE_PYTHON=1`` is set, datn installs as pure Python and behaves
identically, only slower. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib

from setuptools import setup

with open("pyproject.toml", "rb") as pyproject:
    COMPILED_MODULES: list[str] = tomllib.load(pyproject)["tool"]["datn"]["compiled-modules"]


def compiled_extensions() -> list[object]:
    if os.environ.get("DATN_PURE_PYTHON") == "1":
        return []
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None:
        print("datn: no C compiler found; installing the pure-Python core", file=sys.stderr)
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 - only needed when compiling

    # separate=True gives each module its own extension beside its source, so an
    # editable install finds them all inside the datn package.
    return list(mypycify(COMPILED_MODULES, opt_level="3", separate=True))


setup(ext_modules=compiled_extensions())
