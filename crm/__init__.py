"""The CRM: clients (accounts), contacts, deals and activities; the people who
work them (users, teams, roles); the access policy that decides what each
person may reach; and the web UI, JSON API, reports, import and export."""
