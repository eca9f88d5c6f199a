"""``python -m sims.probe``: the command line of :mod:`sims.studies.probe`."""

from sims.studies.probe import main

if __name__ == "__main__":
    raise SystemExit(main())
