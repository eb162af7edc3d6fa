"""SageMaker training entry point (runs in the training image, never in a model function)."""
