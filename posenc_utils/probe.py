"""`python -m posenc_utils.probe`: the command of :mod:`posenc_utils.runners.probe`, kept at its short name."""
import sys

from .runners.probe import main

if __name__ == "__main__":
    sys.exit(main())
