"""`python -m posenc_utils.extended`: the command of :mod:`posenc_utils.studies.extended`, kept at its short name."""
import sys

from .studies.extended import main

if __name__ == "__main__":
    sys.exit(main())
