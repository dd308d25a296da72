"""Taking a state store back to revision 0001, so a kill can land inside a real upgrade."""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig

from reconciler.state import MIGRATIONS, StateStore


def downgrade_to_0001(url: str) -> None:
    store = StateStore(url, migrate=False)
    try:
        with store.engine.begin() as conn:
            config = AlembicConfig()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
    finally:
        store.close()
