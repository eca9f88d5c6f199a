"""One-line exits for ``python -m sims.<tool>``: Ctrl-C and a closed output pipe give no traceback.

Installed by ``sims/__init__.py`` only when the interpreter is importing the package on its way to a
``python -m sims.<tool>`` module (``sys.argv[0] == "-m"`` at that moment), so it covers the seconds spent
importing ``theory`` (which derives sympy expressions at import) before the tool's own ``main`` runs;
importing ``sims`` from a script, a notebook or the tests changes nothing.

* KeyboardInterrupt that reaches the top: ``<prog>: interrupted`` on stderr, then the interpreter's own
  handling (it ends by SIGINT: exit status 130 in a shell).
* BrokenPipeError (output piped into ``head``): nothing printed, exit status 1; stdout is pointed at
  /dev/null so that the interpreter's final flush does not complain either. The same is done at exit
  when a pipe closed without an exception having reached the top (output still buffered).
"""

from __future__ import annotations

import atexit
import os
import sys

__all__ = ["install"]


def _prog() -> str:
    argv = getattr(sys, "orig_argv", None) or []
    if "-m" in argv[:-1]:
        return f"python -m {argv[argv.index('-m') + 1]}"
    return "python"


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _hook(tp, value, tb, _previous=None):
    if issubclass(tp, KeyboardInterrupt):
        print(f"{_prog()}: interrupted", file=sys.stderr, flush=True)
        return
    if issubclass(tp, BrokenPipeError):
        _silence_stdout()
        return
    (_previous or sys.__excepthook__)(tp, value, tb)


def _flush_at_exit() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError, AttributeError):
        pass


def install() -> None:
    """Set the hooks (idempotent)."""
    if getattr(sys.excepthook, "_sims_cli", False):
        return
    previous = sys.excepthook

    def hook(tp, value, tb):
        _hook(tp, value, tb, previous)

    hook._sims_cli = True
    sys.excepthook = hook
    atexit.register(_flush_at_exit)
