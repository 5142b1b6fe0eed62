"""`python -m posenc_utils.bench`: the command of :mod:`posenc_utils.reporting.bench`, kept at its short name."""
import sys

from .reporting.bench import main

if __name__ == "__main__":
    sys.exit(main())
