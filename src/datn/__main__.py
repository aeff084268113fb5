"""``python -m datn``: the ``datn`` command."""

from datn.cli.main import main

main()
