"""BentoML scoring service for the CRM (``leadscore.serving``)."""
