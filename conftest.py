"""Repository-level pytest configuration of the pytest-llem test suite.

Kept free of plugins and fixtures on purpose: in a source checkout, `pytest --llem-preflight`
collects the built-in checks from ``checks/`` next to this file, so pytest loads it then too.
"""
