"""`python -m pytest_llem` is `llem`."""

from .cli import main

raise SystemExit(main())
