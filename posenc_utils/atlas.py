"""`python -m posenc_utils.atlas`: the command of :mod:`posenc_utils.runners.atlas`, kept at its short name."""
import sys

from .runners.atlas import main

if __name__ == "__main__":
    sys.exit(main())
