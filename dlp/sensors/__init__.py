"""Host sensors: what they read (``readers``) and the file sensor itself (``files``); client
records are recognised through the CRM's read API (``crm.readapi``)."""
