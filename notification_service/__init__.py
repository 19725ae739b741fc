"""The notification service: the SMS gateway and templates (built in the next issue)."""
