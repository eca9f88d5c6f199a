"""``python -m sims.exact_boundary_check``: the command line of :mod:`sims.studies.exact_boundary_check`."""

from sims.studies.exact_boundary_check import main

if __name__ == "__main__":
    raise SystemExit(main())
