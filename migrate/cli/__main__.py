"""``python -m migrate.cli``: the same as the ``cni-migrate`` console script."""

from migrate.cli import run

run()
