"""`python -m fnl ...` runs the `fnl` command (see fnl.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
