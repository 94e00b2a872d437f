"""``python -m let_core``: the ``let`` command line, for shells where ``let`` is a builtin."""

from let_core.cli import main

main()
