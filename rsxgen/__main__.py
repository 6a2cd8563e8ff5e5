"""`python -m rsxgen`: the same command line as the `rsxgen` script."""

import sys

from rsxgen.cli import main

sys.exit(main())
