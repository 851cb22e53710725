"""`python -m time_core`: the edit command (also `time-edit`); see `time_core.cli`.

The evaluation and debiasing commands are `python -m time_core.evaluate` and `python -m time_core.debias`.
"""

from .cli import edit_main

__all__ = ["main"]


def main(argv=None):
    return edit_main(argv, prog="python -m time_core")


if __name__ == "__main__":
    main()
