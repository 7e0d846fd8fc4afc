"""Training jobs: tuning, training, evaluation, promotion, backtests and batch scoring, tracked in MLflow."""
