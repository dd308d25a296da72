"""Alembic environment: the state store applies these itself at start (StateStore.migrate)."""

from __future__ import annotations

from alembic import context

from reconciler import failpoints

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite",
                  # crash tests: a kill between two revisions, before the migration commits
                  on_version_apply=lambda **_: failpoints.hit("migrate.after_revision"))
with context.begin_transaction():
    context.run_migrations()
