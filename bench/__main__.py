"""`python -m bench`: the live benchmark (bench/run.py); `python -m bench --help` for options."""
import sys

from .run import main

sys.exit(main())
