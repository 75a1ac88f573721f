"""Persistence: the schema, the engine and migrations."""

from posventa.core.persistence.database import Database
from posventa.core.persistence.migrate import upgrade
from posventa.core.persistence.schema import metadata

__all__ = ["Database", "metadata", "upgrade"]
