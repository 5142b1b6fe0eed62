"""`python -m posenc_utils.compare`: the command of :mod:`posenc_utils.reporting.compare`, kept at its short name."""
import sys

from .reporting.compare import main

if __name__ == "__main__":
    sys.exit(main())
