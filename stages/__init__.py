"""StarFT pipeline stages: each module is a pure core plus a thin command-line entry."""

__version__ = "0.1.0"
