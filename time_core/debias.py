"""`python -m time_core.debias`: the debiasing command (also `time-debias`).

The protocol lives in `time_core.evaluation.debiasing` (the λ search in `time_core.evaluation.search`), the command
line in `time_core.evaluation.cli`.
"""

from .evaluation.cli import debias_main, run_command

__all__ = ["command", "main"]


def main(argv=None) -> int:
    """`python -m time_core.debias`: exit status 0 after a finished run."""
    return run_command("python -m time_core.debias", debias_main, argv)


def command(argv=None) -> int:
    """The console command `time-debias`: exit status 0 after a finished run."""
    return run_command("time-debias", debias_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
