"""`python -m katdensity`: the command line."""

import sys

from katdensity.cli import main

if __name__ == "__main__":
    sys.exit(main())
