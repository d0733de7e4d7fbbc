"""The database schema of the whole testbed: the core's migrations, then each transport's.

A transport ships the SQL of the tables only it uses in its own subpackage
(``Transport.migrations``); this is the one place that puts them in order
for :func:`progressbench.kit.database.migrate`. The order is stable: the
core's files by name, then the registry's transports in registry order, each
transport's files as it lists them. Versions are file names, so a database
migrated before the files moved out of ``kit/migrations`` sees nothing new.
"""

from __future__ import annotations

from progressbench.kit import database
from progressbench.kit.database import Migration, core_migrations, package_migrations
from progressbench.transports import REGISTRY


def migrations() -> list[Migration]:
    found = core_migrations()
    seen: set[tuple[str, str]] = set()
    for transport in REGISTRY.values():
        paths = [p for p in transport.migrations if (transport.package, p) not in seen]
        seen.update((transport.package, p) for p in paths)
        found += package_migrations(transport.package, paths)
    return found


def migrate(database_url: str) -> list[str]:
    """Bring ``database_url`` up to the schema every registered transport needs."""
    return database.migrate(database_url, migrations())
