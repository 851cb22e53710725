"""`python -m time_core.debias`: the debiasing command (also `time-debias`).

The protocol lives in `time_core.evaluation.debiasing` (the λ search in `time_core.evaluation.search`), the command
line in `time_core.evaluation.cli`.
"""

from .evaluation.cli import debias_main

__all__ = ["main"]


def main(argv=None):
    return debias_main(argv, prog="python -m time_core.debias")


if __name__ == "__main__":
    main()
