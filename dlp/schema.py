"""Leak monitoring's tables, for migrations."""

from sqlalchemy import MetaData


def metadata() -> MetaData:
    import dlp.alerts
    import dlp.models  # noqa: F401  (each registers its tables on dlp.base.Base)
    from dlp.base import Base

    return Base.metadata
