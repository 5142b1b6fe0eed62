"""`python -m posenc_utils.pipeline`: the command of :mod:`posenc_utils.runners.pipeline`, kept at its short name."""
import sys

from .runners.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
