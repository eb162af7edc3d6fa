"""The local stack: the deployed system emulated on one machine, no Docker, no AWS account.

Each model's functions run as real ``awslambdaric`` processes against a local Lambda Runtime
API (:mod:`.runtime_api`, :mod:`.function_pool`); :mod:`.gateway` plays API Gateway with
HTTP API 2.0 events (:mod:`.http_api_events`); :mod:`.sagemaker` runs SageMaker-target
models' serving entry point; :mod:`.s3` embeds moto for S3/SQS/DynamoDB and is the SQS event
source of the batch functions; :mod:`.stack` wires it all; :mod:`.command` is ``modelfn up``
and ``modelfn invoke`` (:mod:`.invoke`, :mod:`.v2_input`); :mod:`.processes` owns children.
"""
