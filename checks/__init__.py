"""The built-in pre-flight checks, collected by `pytest --llem-preflight` (installed as
``pytest_llem.checks``)."""
