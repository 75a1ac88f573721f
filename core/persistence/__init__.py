"""Persistence: the schema, the engine and migrations."""

from core.persistence.database import Database
from core.persistence.migrate import upgrade
from core.persistence.schema import metadata

__all__ = ["Database", "metadata", "upgrade"]
