"""`python -m time_core.evaluate`: the evaluation command (also `time-evaluate`).

The protocol lives in `time_core.evaluation.benchmark`, the command line in `time_core.evaluation.cli`.
"""

from .evaluation.cli import evaluate_main

__all__ = ["main"]


def main(argv=None):
    return evaluate_main(argv, prog="python -m time_core.evaluate")


if __name__ == "__main__":
    main()
