"""`python -m posenc_utils.report`: the command of :mod:`posenc_utils.reporting.report`, kept at its short name."""
import sys

from .reporting.report import main

if __name__ == "__main__":
    sys.exit(main())
