"""`python -m posenc_utils.since`: the command of :mod:`posenc_utils.studies.since`, kept at its short name."""
import sys

from .studies.since import main

if __name__ == "__main__":
    sys.exit(main())
