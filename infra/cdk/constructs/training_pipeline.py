"""GPU training for one model: Step Functions → SageMaker training job (.sync) → CodeBuild.

The training job runs functions/training/train.py on the catalog's ``training.instance_type``
and writes ``model.onnx`` into its ``model.tar.gz``. CodeBuild then runs the normal build
(``modelfn build --model NAME``: export → quantize → accuracy gate → manifest) on that
artifact and publishes ``build/models/<name>/`` to ``s3://<artifacts>/<name>/builds/``, from
where ``make synth && cdk deploy`` rolls the new version out through the canary. Why
CodeBuild: the build needs the repository, onnxruntime and minutes of CPU, beyond a
Lambda's 15 minutes/10 GB comfort zone, and Step Functions waits on it natively (.sync).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.catalog import TrainingSpec
from infra.cdk.nag import acknowledge
from infra.cdk.sagemaker_iam import grant_sagemaker_logs_and_metrics


class ModelTrainingPipeline(Construct):
    """Public attributes: ``state_machine``, ``project``, ``training_role``, ``prefixes``."""

    @property
    def state_machine(self) -> sfn.StateMachine:
        return self._state_machine

    @property
    def project(self) -> codebuild.Project:
        return self._project

    @property
    def training_role(self) -> iam.Role:
        return self._training_role

    @property
    def prefixes(self) -> Mapping[str, str]:
        return MappingProxyType(self._prefixes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        catalog_source: str,
        training: TrainingSpec,
        image: tasks.DockerImage,
        source: s3_assets.Asset,
        artifacts: s3.IBucket,
        encryption_key: kms.IKey,
        volume_gb: int = 30,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param catalog_source: the model's ``source`` relative to the catalog (an .onnx path
            the trained model replaces before the build).
        :param image: the shared training image (functions/training/Dockerfile).
        :param source: the zipped repository subset CodeBuild builds from.
        :param artifacts: bucket for training data (``<name>/train/``), job output
            (``<name>/training-output/``) and published builds (``<name>/builds/``).
        :param volume_gb: training instance storage (default 30 GB).
        """
        super().__init__(scope, id)
        self._prefixes = {k: f"{model_name}/{k}/" for k in ("train", "training-output", "builds")}
        self._training_role = iam.Role(
            self, "TrainingRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"modelfn {model_name}: SageMaker training job role",
        )
        grant_sagemaker_logs_and_metrics(self._training_role, kind="TrainingJobs", sid_prefix="Training")
        train = tasks.SageMakerCreateTrainingJob(
            self, "Train",
            training_job_name=sfn.JsonPath.format("{}-{}", model_name[:20], sfn.JsonPath.uuid()),
            role=self._training_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=image, training_input_mode=tasks.InputMode.FILE,
            ),
            hyperparameters={k: str(v) for k, v in training.hyperparameters.items()},
            input_data_config=[tasks.Channel(
                channel_name="train",
                data_source=tasks.DataSource(s3_data_source=tasks.S3DataSource(
                    s3_location=tasks.S3Location.from_bucket(artifacts, self._prefixes["train"]),
                    s3_data_type=tasks.S3DataType.S3_PREFIX,
                )),
            )],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_bucket(
                    artifacts, self._prefixes["training-output"]
                ),
                encryption_key=encryption_key,
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=1,
                instance_type=ec2.InstanceType(training.instance_type.removeprefix("ml.")),
                volume_size=cdk.Size.gibibytes(volume_gb),
                volume_encryption_key=encryption_key,
            ),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=cdk.Duration.seconds(training.max_runtime_s)
            ),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_selector={"artifact.$": "$.ModelArtifacts.S3ModelArtifacts"},
            result_path="$.training",
        )
        self._project = codebuild.Project(
            self, "Build",
            description=f"modelfn {model_name}: build the trained model (quantize + gate)",
            source=codebuild.Source.s3(bucket=source.bucket, path=source.s3_object_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
            ),
            encryption_key=encryption_key,
            timeout=cdk.Duration.hours(1),
            build_spec=codebuild.BuildSpec.from_object(_buildspec(model_name, catalog_source)),
            environment_variables={
                "ARTIFACTS_BUCKET": codebuild.BuildEnvironmentVariable(value=artifacts.bucket_name),
            },
        )
        self._grant_build(model_name, artifacts)
        build = tasks.CodeBuildStartBuild(
            self, "BuildTrained",
            project=self._project,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            environment_variables_override={
                "MODEL_ARTIFACT": codebuild.BuildEnvironmentVariable(
                    value=sfn.JsonPath.string_at("$.training.artifact")
                ),
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        self._state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(train.next(build)),
            timeout=cdk.Duration.seconds(training.max_runtime_s + 2 * 3600),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self, "Logs", retention=log_retention,
                    removal_policy=cdk.RemovalPolicy.DESTROY,
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
        )
        self._acknowledge(model_name, artifacts)

    def _grant_build(self, model_name: str, artifacts: s3.IBucket) -> None:
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="ReadTrainedModel",
            actions=["s3:GetObject"],
            resources=[artifacts.arn_for_objects(f"{self._prefixes['training-output']}*")],
        ))
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="PublishBuild",
            actions=["s3:PutObject"],
            resources=[artifacts.arn_for_objects(f"{self._prefixes['builds']}*")],
        ))

    def _acknowledge(self, model_name: str, artifacts: s3.IBucket) -> None:
        """Every wildcard left is generated by CDK grants or names AWS-chosen resources."""
        stack = cdk.Stack.of(self)
        bucket = f"<{stack.get_logical_id(artifacts.node.default_child)}.Arn>"
        project = f"<{stack.get_logical_id(self._project.node.default_child)}>"
        arn = "arn:<AWS::Partition>:{}:<AWS::Region>:<AWS::AccountId>:{}"
        findings = {
            "Resource::*": "ecr:GetAuthorizationToken, X-Ray and PutMetricData (limited to the "
                           "SageMaker namespace by condition) have no resource-level permissions",
            "Action::kms:ReEncrypt*": "CDK's grant on the training key for SSE-KMS objects and "
                                      "volumes; limited to that one key",
            "Action::kms:GenerateDataKey*": "CDK's grant on the training key for SSE-KMS objects "
                                            "and volumes; limited to that one key",
            "Action::s3:GetObject*": "CDK's grant for the training channel / build source; "
                                     "limited to this model's prefixes and the source asset",
            "Action::s3:GetBucket*": "CDK's grant for the training channel / build source "
                                     "(bucket location and versioning reads)",
            "Action::s3:List*": "SageMaker lists the training channel prefix before copying it",
            "Action::s3:DeleteObject*": "CDK's read-write grant on this model's training-output "
                                        "prefix (SageMaker replaces partial uploads)",
            "Action::s3:Abort*": "SageMaker uploads model.tar.gz as a multipart upload",
            f"Resource::{bucket}/{self._prefixes['train']}*": "training data under this model's "
                                                             "own train/ prefix only",
            f"Resource::{bucket}/{self._prefixes['training-output']}*": "job output under this "
                                                                      "model's own prefix only",
            f"Resource::{bucket}/{self._prefixes['builds']}*": "published builds under this "
                                                             "model's own prefix only",
            "Resource::" + arn.format("logs", "log-group:/aws/sagemaker/TrainingJobs:*"):
                "SageMaker writes each job's logs to streams it names in this log group",
            "Resource::" + arn.format("logs", f"log-group:/aws/codebuild/{project}:*"):
                "CodeBuild's generated grant on its own project's log streams",
            "Resource::" + arn.format("codebuild", f"report-group/{project}-*"):
                "CodeBuild's generated grant on its own project's report groups",
            "Resource::" + arn.format("sagemaker", "training-job/*"):
                "training job names are generated per execution (name + UUID); Step Functions "
                "needs create/describe/stop on them",
        }
        for finding, reason in findings.items():
            acknowledge(self, f"AwsSolutions-IAM5[{finding}]", f"{model_name}: {reason}")


def _buildspec(model_name: str, catalog_source: str) -> dict:
    """CodeBuild: unpack the trained model over the catalog source, build, publish."""
    return {
        "version": "0.2",
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.11"},
                "commands": ["python -m venv .venv", ".venv/bin/pip install -q -e ."],
            },
            "build": {
                "commands": [
                    'aws s3 cp "$MODEL_ARTIFACT" /tmp/trained.tar.gz',
                    "mkdir -p /tmp/trained && tar -xzf /tmp/trained.tar.gz -C /tmp/trained",
                    f'mkdir -p "$(dirname {catalog_source})"',
                    f"cp /tmp/trained/model.onnx {catalog_source}",
                    f".venv/bin/modelfn build --model {model_name} --force",
                    f'aws s3 sync build/models/{model_name} '
                    f'"s3://$ARTIFACTS_BUCKET/{model_name}/builds/$CODEBUILD_BUILD_NUMBER/"',
                ],
            },
        },
    }
