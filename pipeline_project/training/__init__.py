"""Model training, evaluation and the MLflow registry lifecycle."""
