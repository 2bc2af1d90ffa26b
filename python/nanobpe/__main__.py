"""`python -m nanobpe ...` is the same as the `nanobpe` command."""

from nanobpe.cli import main

raise SystemExit(main())
