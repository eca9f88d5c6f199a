"""``python -m sims.figures``: see :mod:`sims.figures.cli`."""

import sys

# Run through the importable package, so that joblib workers find the task functions by name.
from sims.figures.cli import main

sys.exit(main())
