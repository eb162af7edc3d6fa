"""The CDK app: one container-image Lambda per catalog model behind one HTTP API, S3→SQS
batch, SageMaker for heavy models and GPU training, dashboards, alarms and cdk-nag checks.

Entry point: ``python -m infra.cdk.app`` (``cdk.json``). Infra code never runs in a function.
"""
