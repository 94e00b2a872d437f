"""``python -m let_core``: the ``lett`` command line, runnable without the console script."""

from let_core.cli import main

main()
