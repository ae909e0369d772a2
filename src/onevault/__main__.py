"""`python -m onevault` is the `onevault` command."""

from onevault.cli import main

main()
