"""The instance-type rules SageMaker enforces at CreateTrainingJob / CreateEndpointConfig /
UpdateEndpoint, defined once (infra/cdk/sagemaker_instances.py) and used by every construct."""

from __future__ import annotations

import pytest

from infra.cdk.constructs.sagemaker_endpoint import endpoint_id
from infra.cdk.sagemaker_instances import has_local_storage, volume_kms_key


@pytest.mark.parametrize("instance_type", ["ml.g5.xlarge", "ml.g4dn.xlarge", "ml.p4d.24xlarge", "ml.p3dn.24xlarge",
                                           "ml.m5d.large", "ml.c5d.xlarge", "ml.r5d.large", "ml.g6e.xlarge",
                                           "ml.p5.48xlarge", "ml.trn1.2xlarge", "ml.m6id.large"])
def test_create_training_job_gets_no_volume_key_for_local_nvme_storage(instance_type) -> None:
    assert has_local_storage(instance_type)
    assert volume_kms_key(instance_type, "key") is None


@pytest.mark.parametrize("instance_type", ["ml.m5.xlarge", "ml.c5.2xlarge", "ml.p3.2xlarge", "ml.t3.medium",
                                           "ml.c6i.large", "ml.inf2.xlarge", "ml.p2.xlarge"])
def test_ebs_backed_instances_keep_their_volume_key(instance_type) -> None:
    assert not has_local_storage(instance_type)
    assert volume_kms_key(instance_type, "key") == "key"


def test_a_bad_instance_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an ML instance type"):
        has_local_storage("g5")


def test_an_instance_type_change_replaces_the_endpoint_instead_of_failing_update_endpoint() -> None:
    """UpdateEndpoint fails when it changes the instance type of an autoscaled variant; a new
    construct id (a new logical id) makes CloudFormation create a new endpoint instead."""
    assert endpoint_id("ml.g5.xlarge") != endpoint_id("ml.g5.2xlarge")
    assert endpoint_id("ml.g5.xlarge") == endpoint_id("ml.g5.xlarge") == "EndpointMlG5Xlarge"
