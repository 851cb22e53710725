"""The edit command, `time-edit` / `python -m time_core` (`command`), and its before/after preview (`preview`)."""

from .command import edit_main, main, parse_args

__all__ = ["edit_main", "main", "parse_args"]
