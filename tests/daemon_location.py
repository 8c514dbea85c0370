"""The code location tests/test_daemon.py serves to a real daemon: the project's own definitions, with the
automation sensor evaluated every 2 seconds instead of every minute."""

from pipeline_project.definitions import build_definitions

defs = build_definitions(automation_interval_seconds=2)
