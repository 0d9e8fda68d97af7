"""performance_metrics"""

import sqlalchemy as sa
from alembic import op

revision = "host_0002"
down_revision = "host_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "performance_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("metric_name", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("performance_metrics")
