"""The `emergence` command line: argument parsing and the commands' thin wrappers."""
from harness.cli.main import main

__all__ = ["main"]
