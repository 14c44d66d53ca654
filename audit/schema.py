"""The audit log's tables, for migrations."""

from sqlalchemy import MetaData


def metadata() -> MetaData:
    from audit.models import Base

    return Base.metadata
