"""`python -m time_core.evaluate`: the evaluation command (also `time-evaluate`).

The protocol lives in `time_core.evaluation.benchmark`, the command line in `time_core.evaluation.cli`.
"""

from .evaluation.cli import evaluate_main, run_command

__all__ = ["command", "main"]


def main(argv=None) -> int:
    """`python -m time_core.evaluate`: exit status 0 after a finished run."""
    return run_command("python -m time_core.evaluate", evaluate_main, argv)


def command(argv=None) -> int:
    """The console command `time-evaluate`: exit status 0 after a finished run."""
    return run_command("time-evaluate", evaluate_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
