"""`python -m bench`: the runtime benchmark, as `python bench/runtime.py` (same options)."""

import sys

from bench.runtime import main

sys.exit(main())
