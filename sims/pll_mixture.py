"""``python -m sims.pll_mixture``: the command line of :mod:`sims.studies.pll_mixture`."""

from sims.studies.pll_mixture import main

if __name__ == "__main__":
    raise SystemExit(main())
