"""The CRM's database schema: the metadata of its tables, for migrations.

What a valid client record holds (forms, API, CSV import) is ``crm.validation``.
"""

from sqlalchemy import MetaData


def metadata() -> MetaData:
    import crm.attachments
    import crm.export_requests
    import crm.exports
    import crm.identity
    import crm.importer
    import crm.models
    import crm.rights  # noqa: F401  (each registers its tables on crm.base.Base)
    from crm.base import Base

    return Base.metadata
