"""``python -m bench``: every speed figure in one Markdown table (see bench/run_all.py)."""

from .run_all import main

main()
