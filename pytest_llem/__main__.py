"""`python -m pytest_llem` is `llem`."""

from .cli import run

run()
