"""`python -m cnnaural_ext` is the `cnnaural` command."""
import sys

from .cli import main

sys.exit(main())
