"""`python -m stages.report`: one report's tables, figures and Reading (see stages.report.cli)."""

from .cli import main

main()
