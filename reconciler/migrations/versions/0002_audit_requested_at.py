"""audit.requested_at: when the action's request was about to be sent.

A record a crash left pending with no requested_at was never sent: recovery
completes it as not done at once instead of waiting to see whether it lands.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("requested_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("requested_at")
