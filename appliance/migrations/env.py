"""Alembic environment: one history per package, upgraded together (``heads``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import TypeDecorator

from appliance.schema import all_metadata

config = context.config


def render_item(kind, obj, autogen_context):
    """Render the project's column types as the plain types they store."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance if hasattr(obj, "impl_instance") else obj.impl
        return f"sa.{impl!r}"
    return False


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `appliance db upgrade`")
    metadata = config.attributes.get("target_metadata") or all_metadata()
    own_tables = config.attributes.get("own_tables")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        include_name=(lambda name, type_, _parents: type_ != "table" or own_tables is None
                      or name in own_tables),
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
