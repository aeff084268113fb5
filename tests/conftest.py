"""Suite-wide guards."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings

import datn.book.book as compiled_book


def _check_compiled_book_is_fresh() -> None:
    """An editable install leaves the mypyc-compiled book beside its source; if
    the source changed since, the tests would run old code. Refuse to."""
    module_file = Path(compiled_book.__file__ or "")
    if module_file.suffix != ".so":
        return
    source = module_file.with_name("book.py")
    if source.stat().st_mtime > module_file.stat().st_mtime:
        raise RuntimeError(
            f"{module_file.name} is older than book.py: run `make test` (it recompiles) "
            "or set DATN_PURE_PYTHON=1 and reinstall"
        )


_check_compiled_book_is_fresh()


# Tests are deterministic: Hypothesis explores the same examples on every run,
# so a failure in CI reproduces locally. HYPOTHESIS_PROFILE=explore searches anew.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
