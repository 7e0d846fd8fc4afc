"""Data contract, CRM simulator and point-in-time feature pipeline (``leadscore.features``)."""
