"""``python -m sims.finite_dim``: the command line of :mod:`sims.studies.finite_dim`."""

from sims.studies.finite_dim import main

if __name__ == "__main__":
    raise SystemExit(main())
