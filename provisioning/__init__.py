"""Provisioning of a Debian 12 box into a hardened appliance.

Owns the Ansible playbook (``site.yml``), its roles (``roles/``: hardening,
luks, postgresql, citadel, nginx, logforward, postgresql_replica) and an
example inventory (``inventory.example/``); ``runner`` drives the playbook
through ansible-runner and ``cli`` is the ``appliance provision`` command.
"""
