"""``python -m sims.distill``: the command line of :mod:`sims.studies.distill`."""

from sims.studies.distill import main

if __name__ == "__main__":
    raise SystemExit(main())
