"""Thin HTTP API → SageMaker endpoint proxy (no runtime dependencies beyond boto3)."""
