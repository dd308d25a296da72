"""The first state store: inventory, dry-run evidence, cycles, audit log, leases, guard marks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inventory",
        sa.Column("target", sa.String(128), primary_key=True),
        sa.Column("native_id", sa.String(1024), primary_key=True),
        sa.Column("schedule_id", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    op.create_table(
        "evidence",
        sa.Column("target", sa.String(128), primary_key=True),
        sa.Column("native_id", sa.String(1024), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("live_name", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("cycles_seen", sa.Integer, nullable=False),
        sa.Column("last_cycle", sa.Integer, nullable=False),
    )
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("result", sa.String(16)),
        sa.Column("leader", sa.Boolean, nullable=False),
        sa.Column("registry_schedules", sa.Integer),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("cycle_id", sa.Integer),
        sa.Column("replica", sa.String(255), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("native_id", sa.String(1024), nullable=False),
        sa.Column("live_name", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("approve_only", sa.Text),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("snapshot", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("restores", sa.Integer),
        sa.Column("restored_by", sa.Integer),
    )
    op.create_index("audit_by_target", "audit", ["target", "started_at"])
    op.create_index("audit_by_status", "audit", ["status"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(255)),
        sa.Column("acquired_at", sa.Float),
        sa.Column("renewed_at", sa.Float),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("transitions", sa.Integer, nullable=False),
    )
    op.create_table(
        "marks",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("marks", "leases", "audit", "cycles", "evidence", "inventory"):
        op.drop_table(table)
