"""Citadel's composition root, and beneath every package its kernel.

``appliance.kernel`` (errors, settings, the database, permission names, the current
principal, paging, hooks) and ``appliance.keys`` (encryption and sealing) are what every
package may import. The rest of ``appliance`` wires the packages together: the Flask app
factory, the ``appliance`` command line, authentication and sessions, smart cards, the
scheduled worker and health checks. Only the app factory and the command line import the
domains (see docs/architecture.md).
"""
