"""``python -m sims.phase_diagram``: the command line of :mod:`sims.studies.phase_diagram`."""

from sims.studies.phase_diagram import main

if __name__ == "__main__":
    raise SystemExit(main())
