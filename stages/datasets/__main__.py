"""python -m stages.datasets check ...: see stages/datasets/datacheck.py."""

from .datacheck import main

main()
