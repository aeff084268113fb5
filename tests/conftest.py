"""Suite-wide guards and settings."""

from __future__ import annotations

import importlib
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent


def _compiled_sources() -> dict[str, str]:
    """Module name -> source path of every module setup.py may compile."""
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        sources = tomllib.load(pyproject)["tool"]["datn"]["compiled-modules"]
    return {s.removeprefix("src/").removesuffix(".py").replace("/", "."): s for s in sources}


def _check_compiled_modules_are_fresh() -> None:
    """An editable install leaves each mypyc-compiled module beside its source;
    if a source changed since, the tests would run old code. Refuse to."""
    for name, source in _compiled_sources().items():
        module_file = Path(importlib.import_module(name).__file__ or "")
        if module_file.suffix != ".so":
            continue
        if (ROOT / source).stat().st_mtime > module_file.stat().st_mtime:
            raise RuntimeError(
                f"{module_file.name} is older than {source}: run `make test` (it recompiles) "
                "or reinstall with DATN_PURE_PYTHON=1"
            )


_check_compiled_modules_are_fresh()

# Tests are deterministic: Hypothesis explores the same examples on every run,
# so a failure in CI reproduces locally. HYPOTHESIS_PROFILE=explore searches anew.
# No deadline per example: how long an example takes on a busy two-core
# machine is no property of the code (benchmarks/ measure speed), and a
# deadline there fails tests whose assertions all hold.
settings.register_profile("deterministic", derandomize=True, print_blob=True, deadline=None)
settings.register_profile("explore", derandomize=False, print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_report_header() -> str:
    compiled = [
        name
        for name in _compiled_sources()
        if (importlib.import_module(name).__file__ or "").endswith(".so")
    ]
    return f"datn core: {'compiled: ' + ', '.join(compiled) if compiled else 'pure Python'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long soak variants (marked ``slow``) run only when asked for, with
    ``-m slow``; the default run has a shorter variant of each."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a long soak variant: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
