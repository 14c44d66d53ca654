"""The CRM's resources in the JSON API (``appliance.api`` holds the blueprint)."""
