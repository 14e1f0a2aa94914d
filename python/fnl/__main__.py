"""`python -m fnl <command>`: the same as the `fnl` console script."""
import sys

from .cli import main

sys.exit(main())
