"""Citadel's composition root.

It wires the packages together: configuration, the Flask app factory, the
``appliance`` command line, authentication and sessions, keys and sealing,
smart cards, the scheduled worker and health checks. It is the only package
that knows all the others.
"""
