"""`python -m nss`: the command line."""
import sys

from .cli import main

sys.exit(main())
