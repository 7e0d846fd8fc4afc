"""Training, evaluation, MLflow tracking and the deployable scoring model (``leadscore.training``)."""
