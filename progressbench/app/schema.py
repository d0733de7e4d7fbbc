"""The database schema of the whole testbed: the core's migrations, then each transport's.

A transport ships the SQL of the tables only it uses in its own subpackage
(``Transport.migrations``); this is the one place that puts them in order
for :func:`progressbench.kit.database.migrate`. The order is stable: the
core's files by name, then the registry's transports in registry order, each
transport's files as it lists them. Versions are file names, so a database
migrated before the files moved out of ``kit/migrations`` sees nothing new.
"""

from __future__ import annotations

import importlib.resources

from progressbench.kit import database
from progressbench.kit.database import Migration, core_migrations, package_migrations
from progressbench.kit.roles import RoleGrants, merge_grants, parse_grants
from progressbench.transports.registry import REGISTRY


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


#: The API's and workers' own grants, next to their code.
CORE_GRANTS = ("progressbench.app.services", "grants.toml")


def grants() -> dict[str, RoleGrants]:
    """Per service role, the Postgres grants declared by the core and every registered transport.

    Every transport is included whether it runs or not: the API and workers mount every
    transport's routes. A file shared by two registry entries counts once.
    """
    sources = [CORE_GRANTS]
    for transport in REGISTRY.values():
        if transport.grants and (transport.package, transport.grants) not in sources:
            sources.append((transport.package, transport.grants))
    return merge_grants(
        parse_grants(importlib.resources.files(package).joinpath(name).read_text(), f"{package}/{name}")
        for package, name in sources
    )
