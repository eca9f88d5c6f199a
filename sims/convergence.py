"""``python -m sims.convergence``: the command line of :mod:`sims.studies.convergence`."""

from sims.studies.convergence import main

if __name__ == "__main__":
    raise SystemExit(main())
