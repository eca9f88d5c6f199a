"""The command-line experiments, each on the engine of :mod:`sims.engine`.

* :mod:`.distill` -- one scenario: SD rounds and the PLL student, linearised and/or exact;
* :mod:`.phase_diagram` -- where SD and the PLL student reach 100 % training accuracy (sweep, figure);
* :mod:`.convergence` -- the Gaussian mixture approaching the exact block model as D grows;
* :mod:`.exact_boundary_check` -- the certified exact-level theory against the float exact solvers;
* :mod:`.pll_mixture` -- why the PLL student fails on the mixture while the theory says it succeeds.

``python -m sims.<name>`` runs each (the modules ``sims/<name>.py`` call their ``main``).
"""
