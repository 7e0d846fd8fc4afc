"""leadscore: calibrated, leakage-safe, explainable lead scoring.

The package's stages live in the repository's top-level folders and are imported as
``leadscore.features`` (features/), ``leadscore.training`` (training/) and
``leadscore.serving`` (serving/). Importing has no side effects.
"""

__version__ = "0.1.0"
