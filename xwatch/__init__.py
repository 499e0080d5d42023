"""xwatch: crisis detection and alerting for brand monitoring on X."""

__version__ = "0.1.0"
