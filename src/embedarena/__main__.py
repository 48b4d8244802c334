"""`python -m embedarena` runs the CLI."""

from embedarena.cli import main

main()
