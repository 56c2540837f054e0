"""`python -m bench`: run the benchmark suite and print a markdown table (see bench/run.py)."""

from __future__ import annotations

import sys

from bench.run import main

sys.exit(main())
