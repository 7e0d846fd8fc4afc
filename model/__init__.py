"""The deployable model and its parts: one typed door in, one typed door out.

``records`` (the raw lead a CRM sends and the scored lead it gets back), ``transforms`` (the
:class:`FeatureTransform` implementations a model carries), ``scoring_model`` (transform + booster +
calibration + explanation in one object), ``pyfunc`` (its MLflow wrapper) and ``store`` (artifact
names and loading). Training writes models through this room; serving and batch scoring read them
through it, and import nothing from the training jobs.
"""
