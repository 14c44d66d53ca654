"""postgresql: lock and read the chain head in one statement

``audit_lock_head(key)`` takes the append lock and returns the newest event's
seq and hash (or, with an empty table, the end of the last archive segment).
Being VOLATILE, its query runs on a fresh snapshot taken after the lock is
granted, so it sees every append committed before; one round trip instead of
two on every request that records an event. SQLite needs nothing: its
transactions already hold the write lock.

Revision ID: 524bb9cf03d2
Revises: 9f4ac915ace0
Create Date: 2026-11-23 13:50:43.346218
"""

from __future__ import annotations

from alembic import op

revision = '524bb9cf03d2'
down_revision = '9f4ac915ace0'
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION audit_lock_head(lock_key bigint, OUT head_seq bigint, OUT head_hash bytea)
RETURNS record LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.seq, e.hash INTO head_seq, head_hash
        FROM audit_events e ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT s.end_seq - 1, s.head_hash INTO head_seq, head_hash
            FROM audit_segments s ORDER BY s.end_seq DESC LIMIT 1;
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_lock_head(bigint)")
