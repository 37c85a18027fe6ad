import os

import pytest

# Tests must not fight over the two cores with the Snakemake runs they start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests (CI does)")
    parser.addoption("--long", action="store_true",
                     help="also run the long cluster checks (minutes of SLURM waiting each; CI does not)")


def pytest_collection_modifyitems(config, items):
    long_skip = pytest.mark.skip(reason="long: run with --long")
    slow_skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "long" in item.keywords and not config.getoption("--long"):
            item.add_marker(long_skip)
        elif "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(slow_skip)
