"""``python -m xentrace_cli`` runs the ``xenlat`` command."""

from .cli import main

main()
