"""The CRM: clients (accounts), contacts, deals and activities; the people who
work them (users, teams, roles); the access policy that decides what each
person may reach; and the web UI, JSON API, reports, import and export."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Blueprint, Flask


def init_app(app: Flask, api: Blueprint) -> None:
    """Add the CRM to ``app``: its pages, its resources under ``api`` (``/api/v1``) and
    their OpenAPI part; and provide the access policy as every request's rights."""
    from appliance.kernel.openapi import add_fragment
    from appliance.kernel.principal import provide_rights
    from crm.access import Policy
    from crm.api import misc, openapi, records
    from crm.attachments import register_source
    from crm.views import (
        accounts,
        activities,
        admin,
        attachments,
        contacts,
        deals,
        exports,
        home,
        imports,
        reports,
    )

    provide_rights(app, Policy)
    register_source(app.extensions["citadel.appliance"].data_dir)  # so key rotation finds the files
    for module in (home, accounts, contacts, deals, activities, attachments, reports, imports, exports,
                   admin):
        app.register_blueprint(module.bp)
    api.register_blueprint(records.bp)
    api.register_blueprint(misc.bp)
    add_fragment(app, openapi.fragment)
