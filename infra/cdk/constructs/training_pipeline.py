"""Training for one model: Step Functions → the user's SageMaker training job → CodeBuild.

The training job runs the user's entry point (catalog ``training.entry_point``) through the
runner in the model's training image (PyTorch, CUDA or CPU by instance type; the user's code
is its last layer, infra/cdk/training_image.py). Its ``train`` channel is the model's data
prefix (by default ``s3://<batch bucket>/<model>/train/``, where new objects also start a
retraining, retraining_trigger.py); the catalog's hyperparameters, instance type and
``max_runtime_s`` go to CreateTrainingJob. CodeBuild then runs ``modelfn train NAME --trained
DIR --deployed`` on the job's ``model.tar.gz`` (infra/train/deployed.py): it fetches the LIVE
version's artifact and metrics, builds the candidate, gates it against live, and when it wins
builds and pushes the model's image, updates the api and batch functions and starts the
CodeDeploy deployment of ``live`` (exactly what ``modelfn promote --deployed`` starts). It
exports the outcome; the execution ends ``Deployed`` (the deployments in its output),
``NotPromoted`` (the gate's reason in its output), or fails (``TrainingFailed``,
``BuildFailed``). The build is also published to ``s3://<artifacts>/<name>/builds/<n>/``.

Why a polling loop (Create → Describe → Choice → Wait) instead of the ``.sync`` integrations:
every transition and the job's own ``FailureReason`` appear in the execution history and the
final error; it needs no EventBridge managed rule in the account; and the same definition runs
unchanged in moto's Step Functions (tests/infra/test_training_state_machine.py), which
forwards request/response calls but cannot emulate ``.sync`` for SageMaker or CodeBuild. A
one-hour job polled each minute costs ~200 state transitions (half a cent).
Why CodeBuild for the build: it needs the repository, onnxruntime and minutes of CPU, beyond a
Lambda's 15 minutes/10 GB comfort zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

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

from infra.cdk.live_alias_grants import deployment_statements
from infra.cdk.nag import acknowledge, bucket_arn_finding
from infra.cdk.sagemaker_iam import grant_sagemaker_logs_and_metrics
from infra.cdk.sagemaker_instances import volume_kms_key
from infra.cdk.training_image import TrainingImage
from layers import names

#: Training job names: ``<model[:20]>-<uuid>`` (63 characters at most).
JOB_NAME_PREFIX_CHARS = 20
#: Where SageMaker writes every training job's logs (one group per account and region).
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: CodeBuild's terminal statuses other than SUCCEEDED.
BUILD_FAILED = ("FAILED", "FAULT", "STOPPED", "TIMED_OUT")


class PrefixScopedLocation(tasks.S3Location):
    """The ``train`` channel, granted on its prefix only.

    ``S3Location.from_bucket`` grants ``s3:List*`` on the whole bucket (CDK's ``grant_read``),
    so one model's training job could list every model's keys. SageMaker lists the channel
    with ``prefix=<channel prefix>`` (S3Prefix data type), so ListBucket under an ``s3:prefix``
    condition is what it needs, plus GetObject on the keys below it."""

    def __init__(self, bucket: s3.IBucket, prefix: str) -> None:
        super().__init__()
        self._bucket, self._prefix = bucket, prefix

    def bind(self, task, *, for_reading=None, for_writing=None) -> tasks.S3LocationConfig:
        if for_writing:
            raise ValueError("the train channel is read-only")
        task.role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadTrainChannel", actions=["s3:GetObject"],
            resources=[self._bucket.arn_for_objects(f"{self._prefix}*")]))
        task.role.add_to_principal_policy(iam.PolicyStatement(
            sid="ListTrainChannel", actions=["s3:ListBucket"], resources=[self._bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{self._prefix}*", self._prefix]}}))
        return tasks.S3LocationConfig(uri=self._bucket.s3_url_for_object(self._prefix))


def retention_days(retention: logs.RetentionDays) -> int:
    """``RetentionDays.ONE_MONTH`` → 30 (what PutRetentionPolicy takes), as CDK renders it."""
    probe = cdk.Stack()
    group = logs.LogGroup(probe, "Group", retention=retention)
    return int(probe.resolve(group.node.default_child.retention_in_days))


class ModelTrainingPipeline(Construct):
    """Public attributes: ``state_machine``, ``project``, ``training_role``, ``data_bucket``,
    ``prefixes``."""

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
    def data_bucket(self) -> s3.IBucket:
        """The bucket of the ``train`` channel."""
        return self._data_bucket

    @property
    def prefixes(self) -> Mapping[str, str]:
        return MappingProxyType(self._prefixes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        image: TrainingImage,
        instance_type: str,
        hyperparameters: Mapping[str, str],
        max_runtime_s: int,
        entry_point: str | None = None,
        instance_count: int = 1,
        data_bucket: s3.IBucket,
        data_prefix: str,
        source: s3_assets.Asset,
        artifacts: s3.IBucket,
        encryption_key: kms.IKey,
        volume_gb: int = 30,
        poll_interval_s: int = 60,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        deploy_to: Sequence[Any] = (),
        deployed_build: s3_assets.Asset | None = None,
    ) -> None:
        """
        :param deploy_to: the model's :class:`~infra.cdk.constructs.model_function.ModelFunction`
            s (api, batch) a winning candidate is deployed to; default none (the build step
            then fails at the deploy with the reason, e.g. for a SageMaker-target model).
        :param deployed_build: the ``build/models/<name>`` that ``cdk deploy`` ships, zipped:
            the live artifact when no retraining has published one yet (default none).
        :param image: the training image with the runner and the user's code
            (training_image.training_image).
        :param hyperparameters: the catalog's, as SageMaker strings.
        :param data_bucket: / :param data_prefix: the ``train`` channel (an S3 prefix).
        :param entry_point: the user's ``module:function`` or script relative to the code
            directory (catalog ``training.entry_point``); default none: the runner's own.
        :param instance_count: data-parallel instances of the training job (catalog
            ``training.instance_count``, default 1); the runner derives rank and world size
            from ``SM_HOSTS`` (functions/training/train.py).
        :param source: the zipped repository subset CodeBuild builds from.
        :param artifacts: bucket for job output (``<name>/training-output/``) and published
            builds (``<name>/builds/``), encrypted with ``encryption_key``.
        :param volume_gb: training instance storage (default 30 GB).
        :param poll_interval_s: seconds between status checks of the job and the build
            (default 60).
        """
        super().__init__(scope, id)
        self._prefixes = {
            "train": data_prefix,
            **{k: f"{model_name}/{k}/" for k in ("training-output", "builds")},
        }
        self._data_bucket = data_bucket
        self._training_role = iam.Role(
            self, "TrainingRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"modelfn {model_name}: SageMaker training job role",
        )
        grant_sagemaker_logs_and_metrics(self._training_role, kind="TrainingJobs", sid_prefix="Training")
        self._grant_pull(image)
        self._project = self._build_project(model_name, source, artifacts, encryption_key, log_retention,
                                            deployed_build)
        self._grant_build(artifacts, encryption_key)
        self._grant_deploy(model_name, artifacts, deploy_to)
        definition = self._definition(
            model_name=model_name, entry_point=entry_point, image=image.image,
            instance_type=instance_type, hyperparameters=hyperparameters,
            max_runtime_s=max_runtime_s, data_bucket=data_bucket, artifacts=artifacts,
            encryption_key=encryption_key, volume_gb=volume_gb, instance_count=instance_count,
            poll=cdk.Duration.seconds(poll_interval_s),
            log_retention_days=retention_days(log_retention),
        )
        self._state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=cdk.Duration.seconds(max_runtime_s + 2 * 3600),
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
        self._acknowledge(model_name, artifacts, data_bucket)

    def _grant_pull(self, image: TrainingImage) -> None:
        """A ``training.image`` in ECR: pulls from its one repository (CDK grants the built one's)."""
        if image.repository_arn is None:
            return
        self._training_role.add_to_principal_policy(iam.PolicyStatement(
            sid="PullTrainingImageToken", actions=["ecr:GetAuthorizationToken"], resources=["*"],
        ))
        self._training_role.add_to_principal_policy(iam.PolicyStatement(
            sid="PullTrainingImage", resources=[image.repository_arn],
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        ))

    def _definition(
        self, *, model_name: str, entry_point: str | None, image: tasks.DockerImage,
        instance_type: str, hyperparameters: Mapping[str, str], max_runtime_s: int,
        data_bucket: s3.IBucket, artifacts: s3.IBucket, encryption_key: kms.IKey,
        volume_gb: int, poll: cdk.Duration, log_retention_days: int, instance_count: int = 1,
    ) -> sfn.IChainable:
        name = sfn.Pass(
            self, "NameJob",
            parameters={"name": sfn.JsonPath.format(
                "{}-{}", model_name[:JOB_NAME_PREFIX_CHARS], sfn.JsonPath.uuid())},
            result_path="$.job",
        )
        train = tasks.SageMakerCreateTrainingJob(
            self, "Train",
            training_job_name=sfn.JsonPath.string_at("$.job.name"),
            role=self._training_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=image,
                training_input_mode=tasks.InputMode.FILE,
            ),
            # the execution's (the control API's per-run values) or the catalog's (CatalogHyperparameters)
            hyperparameters={k: sfn.JsonPath.string_at(f"$.hyperparameters['{k}']") for k in hyperparameters},
            environment=None if entry_point is None else {names.ENV_TRAINING_ENTRY_POINT: entry_point},
            input_data_config=[tasks.Channel(
                channel_name="train",
                data_source=tasks.DataSource(s3_data_source=tasks.S3DataSource(
                    s3_location=PrefixScopedLocation(data_bucket, self._prefixes["train"]),
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
                instance_count=instance_count,
                instance_type=ec2.InstanceType(instance_type.removeprefix("ml.")),
                volume_size=cdk.Size.gibibytes(volume_gb),
                # SageMaker rejects a volume key for instance types with local NVMe storage
                # (ml.g5, ml.g4dn, ml.p4d …): CreateTrainingJob would fail (sagemaker_instances)
                volume_encryption_key=volume_kms_key(instance_type, encryption_key),
            ),
            stopping_condition=tasks.StoppingCondition(max_runtime=cdk.Duration.seconds(max_runtime_s)),
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            result_path=sfn.JsonPath.DISCARD,
        )
        stack = cdk.Stack.of(self)
        describe = tasks.CallAwsService(
            self, "CheckTraining",
            service="sagemaker", action="describeTrainingJob",
            parameters={"TrainingJobName": sfn.JsonPath.string_at("$.job.name")},
            iam_resources=[stack.format_arn(
                service="sagemaker", resource="training-job",
                resource_name=f"{model_name[:JOB_NAME_PREFIX_CHARS]}-*".lower(),
            )],
            result_path="$.training",
        )
        describe.add_retry(max_attempts=3, interval=cdk.Duration.seconds(10), backoff_rate=2)
        start_build = tasks.CodeBuildStartBuild(
            self, "BuildTrained",
            project=self._project,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            environment_variables_override={
                "MODEL_ARTIFACT": codebuild.BuildEnvironmentVariable(
                    value=sfn.JsonPath.string_at("$.training.ModelArtifacts.S3ModelArtifacts")
                ),
            },
            result_selector={"id.$": "$.Build.Id"},
            result_path="$.build",
        )
        check_build = tasks.CallAwsService(
            self, "CheckBuild",
            service="codebuild", action="batchGetBuilds",
            parameters={"Ids": sfn.JsonPath.array(sfn.JsonPath.string_at("$.build.id"))},
            iam_resources=[self._project.project_arn],
            # ArrayGetItem, not $.Builds[0]: an index path yields a list in some evaluators
            result_selector={"build.$": "States.ArrayGetItem($.Builds, 0)"},
            result_path="$.buildStatus",
        )
        check_build.add_retry(max_attempts=3, interval=cdk.Duration.seconds(10), backoff_rate=2)
        training_done = (
            sfn.Choice(self, "TrainingOutcome")
            .when(sfn.Condition.string_equals("$.training.TrainingJobStatus", "Completed"),
                  start_build.next(check_build).next(
                      sfn.Choice(self, "BuildDone?")
                      .when(sfn.Condition.string_equals("$.buildStatus.build.BuildStatus", "SUCCEEDED"),
                            self._judged())
                      .when(sfn.Condition.or_(*(sfn.Condition.string_equals(
                                "$.buildStatus.build.BuildStatus", s) for s in BUILD_FAILED)),
                            sfn.Fail(self, "BuildFailed", error="BuildFailed", cause_path=sfn.JsonPath.format(
                                "CodeBuild build {} ended {}; its log is in CloudWatch under "
                                "/aws/codebuild/", sfn.JsonPath.string_at("$.build.id"),
                                sfn.JsonPath.string_at("$.buildStatus.build.BuildStatus"))))
                      .otherwise(sfn.Wait(self, "WaitBuild", time=sfn.WaitTime.duration(poll))
                                 .next(check_build))))
            .when(sfn.Condition.string_equals("$.training.TrainingJobStatus", "Failed"),
                  sfn.Fail(self, "TrainingFailed", error="TrainingFailed",
                           cause_path="$.training.FailureReason"))
            .when(sfn.Condition.string_equals("$.training.TrainingJobStatus", "Stopped"),
                  sfn.Fail(self, "TrainingStopped", error="TrainingStopped",
                           cause="the training job was stopped before it completed"))
        )
        # SageMaker writes job logs to /aws/sagemaker/TrainingJobs, a group it creates without a
        # retention and shares across the account (a stack cannot own it: it may exist already).
        # Once a job has run the group exists, so each run sets its retention; a failure here
        # (no logs written, no permission) never fails the run.
        keep_logs = tasks.CallAwsService(
            self, "KeepTrainingLogs",
            service="cloudwatchlogs", action="putRetentionPolicy", iam_action="logs:PutRetentionPolicy",
            parameters={"LogGroupName": TRAINING_LOG_GROUP, "RetentionInDays": log_retention_days},
            # a log group's ARN comes with and without the ":*" suffix; IAM matches either
            iam_resources=[arn for name in (TRAINING_LOG_GROUP, f"{TRAINING_LOG_GROUP}:*")
                           for arn in [stack.format_arn(service="logs", resource="log-group", resource_name=name,
                                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]],
            result_path=sfn.JsonPath.DISCARD,
        )
        keep_logs.add_catch(training_done, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        finished = sfn.Condition.or_(*(sfn.Condition.string_equals("$.training.TrainingJobStatus", s)
                                       for s in ("Completed", "Failed", "Stopped")))
        job_ended = (
            sfn.Choice(self, "TrainingDone?")
            .when(finished, keep_logs.next(training_done))
            .otherwise(sfn.Wait(self, "WaitTraining", time=sfn.WaitTime.duration(poll)).next(describe))
        )
        name.next(train).next(describe).next(job_ended)
        # runs started over HTTPS carry their hyperparameters (functions/control); others
        # (retraining, a console start) get the catalog's
        defaults = sfn.Pass(self, "CatalogHyperparameters",
                            result=sfn.Result.from_object({k: str(v) for k, v in hyperparameters.items()}),
                            result_path="$.hyperparameters")
        return (sfn.Choice(self, "Hyperparameters?")
                .when(sfn.Condition.is_present("$.hyperparameters"), name)
                .otherwise(defaults.next(name)))

    def _judged(self) -> sfn.IChainable:
        """The build succeeded: it exported the outcome (``MODELFN_OUTCOME``, the only exported
        variable, JSON from ``modelfn train --deployed``). A winner is live (CodeDeploy
        deployments started); a loser ends the run with the gate's reason in the output."""
        read = sfn.Pass(self, "ReadOutcome", parameters={"variable": sfn.JsonPath.array_get_item(
            sfn.JsonPath.list_at("$.buildStatus.build.ExportedEnvironmentVariables"), 0)},
            result_path="$.exported")
        parse = sfn.Pass(self, "ParseOutcome", parameters={
            "outcome.$": "States.StringToJson($.exported.variable.Value)"}, result_path="$.judged")
        summary = {
            "training_job": sfn.JsonPath.string_at("$.job.name"),
            "artifact": sfn.JsonPath.string_at("$.training.ModelArtifacts.S3ModelArtifacts"),
            "build": sfn.JsonPath.string_at("$.build.id"),
            "version": sfn.JsonPath.string_at("$.judged.outcome.version"),
            "live_version": sfn.JsonPath.string_at("$.judged.outcome.live_version"),
            "promoted": sfn.JsonPath.string_at("$.judged.outcome.promoted"),
            "reason": sfn.JsonPath.string_at("$.judged.outcome.reason"),
        }
        return read.next(parse).next(
            sfn.Choice(self, "Promoted?")
            .when(sfn.Condition.boolean_equals("$.judged.outcome.promoted", True),
                  sfn.Pass(self, "Summarize", parameters={
                      **summary, "deployments": sfn.JsonPath.object_at("$.judged.outcome.deployments")})
                  .next(sfn.Succeed(self, "Deployed")))
            .otherwise(sfn.Pass(self, "GateKeptLive", parameters=summary)
                       .next(sfn.Succeed(self, "NotPromoted", comment="the live version stays; see reason"))))

    def _build_project(self, model_name: str, source: s3_assets.Asset, artifacts: s3.IBucket,
                       encryption_key: kms.IKey, log_retention: logs.RetentionDays,
                       deployed_build: s3_assets.Asset | None) -> codebuild.Project:
        # its own log group with a retention (CodeBuild's default group never expires)
        build_logs = logs.LogGroup(self, "BuildLogs", retention=log_retention,
                                   removal_policy=cdk.RemovalPolicy.DESTROY)
        return codebuild.Project(
            self, "Build",
            description=f"modelfn {model_name}: build the trained model (quantize + gate)",
            source=codebuild.Source.s3(bucket=source.bucket, path=source.s3_object_key),
            secondary_sources=[] if deployed_build is None else [codebuild.Source.s3(
                bucket=deployed_build.bucket, path=deployed_build.s3_object_key, identifier="deployed")],
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
                privileged=True,  # builds the winner's image (docker) before pushing it
            ),
            encryption_key=encryption_key,
            timeout=cdk.Duration.hours(1),
            build_spec=codebuild.BuildSpec.from_object(buildspec(model_name)),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=build_logs)),
            environment_variables={
                "ARTIFACTS_BUCKET": codebuild.BuildEnvironmentVariable(value=artifacts.bucket_name),
                # the stack whose Deployment<Model> output names the functions and groups
                "MODELFN_STACK": codebuild.BuildEnvironmentVariable(value=cdk.Stack.of(self).stack_name),
            },
        )

    def _grant_deploy(self, model_name: str, artifacts: s3.IBucket, deploy_to: Sequence[Any]) -> None:
        """What ``modelfn train --deployed`` calls (infra/train/deployed.py), on this model's
        own resources: the stack output, the live aliases and versions, the functions' code,
        the CodeDeploy groups, the published versions under ``<name>/versions/``, and pushing
        to the stack's image-asset repository (where the function's image already is)."""
        stack = cdk.Stack.of(self)
        versions = f"{model_name}/versions/"
        # the live artifact is read (a missing one, 403 without ListBucket, falls back to the
        # deployed build), the winner written; no listing needed
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="ReadOwnVersions", actions=["s3:GetObject"], resources=[artifacts.arn_for_objects(f"{versions}*")]))
        artifacts.grant_put(self._project, f"{versions}*")
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="ReadStackOutputs", actions=["cloudformation:DescribeStacks"], resources=[stack.stack_id]))
        self._deploy_function_findings: list[str] = []
        if not deploy_to:
            return
        functions = [f.function.function_arn for f in deploy_to]
        self._deploy_function_findings = [
            f"<{cdk.Stack.of(self).get_logical_id(f.function.node.default_child)}.Arn>" for f in deploy_to]
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="DeployFunctions",
            actions=["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionCode",
                     "lambda:PublishVersion", "lambda:GetAlias", "lambda:ListAliases",
                     "lambda:ListVersionsByFunction", "lambda:DeleteFunction"],
            resources=[*functions, *(f"{arn}:*" for arn in functions)]))
        for f in deploy_to:
            for statement in deployment_statements(f.deployment_group, read_deployments=True):
                self._project.add_to_role_policy(statement)
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="PushImageToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="PushModelImage",
            actions=["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                     "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage",
                     "ecr:GetDownloadUrlForLayer"],
            resources=[stack.format_arn(service="ecr", resource="repository",
                                        resource_name="cdk-*-container-assets-*")]))

    def _grant_build(self, artifacts: s3.IBucket, encryption_key: kms.IKey) -> None:
        """Exactly what the buildspec's S3 calls need (tests/infra/test_training_iam.py).

        ``aws s3 cp`` of the job output: HeadObject + GetObject (+ KMS decrypt);
        ``aws s3 sync`` to ``builds/``: ListObjectsV2 under the destination prefix, PutObject
        or multipart uploads of each file (+ KMS data keys; decrypt for multipart).
        """
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="ReadTrainedModel",
            actions=["s3:GetObject"],
            resources=[artifacts.arn_for_objects(f"{self._prefixes['training-output']}*")],
        ))
        artifacts.grant_put(self._project, f"{self._prefixes['builds']}*")
        encryption_key.grant_decrypt(self._project)
        self._project.add_to_role_policy(iam.PolicyStatement(
            sid="ListOwnBuilds",
            actions=["s3:ListBucket"],
            resources=[artifacts.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{self._prefixes['builds']}*"]}},
        ))

    def _acknowledge(self, model_name: str, artifacts: s3.IBucket, data_bucket: s3.IBucket) -> None:
        """Every wildcard left is generated by CDK grants or names AWS-chosen resources."""
        stack = cdk.Stack.of(self)

        def logical(bucket: s3.IBucket) -> str:
            return bucket_arn_finding(bucket)

        project = f"<{stack.get_logical_id(self._project.node.default_child)}>"
        arn = "arn:<AWS::Partition>:{}:<AWS::Region>:<AWS::AccountId>:{}"
        job_prefix = model_name[:JOB_NAME_PREFIX_CHARS].lower()
        findings = {
            "Resource::*": "ecr:GetAuthorizationToken, X-Ray and PutMetricData (limited to the "
                           "SageMaker namespace by condition) have no resource-level permissions",
            "Action::kms:ReEncrypt*": "CDK's grant on the training key for SSE-KMS objects and "
                                      "volumes; limited to that one key",
            "Action::kms:GenerateDataKey*": "CDK's grant on the training key for SSE-KMS objects "
                                            "and volumes; limited to that one key",
            "Action::s3:GetObject*": "CDK's grant for the training channel, code and build "
                                     "source; limited to this model's prefixes and the assets",
            "Action::s3:GetBucket*": "CDK's grant for the training channel / build source "
                                     "(bucket location and versioning reads)",
            "Action::s3:List*": "SageMaker lists the training channel prefix before copying it",
            "Action::s3:DeleteObject*": "CDK's read-write grant on this model's training-output "
                                        "prefix (SageMaker replaces partial uploads)",
            "Action::s3:Abort*": "SageMaker and aws s3 sync upload large files as multipart "
                                 "uploads; limited to this model's output prefixes",
            f"Resource::{logical(data_bucket)}/{self._prefixes['train']}*": "training data under "
                                                                           "this model's train/ prefix",
            f"Resource::{logical(artifacts)}/{self._prefixes['training-output']}*": "job output under "
                                                                                   "this model's prefix",
            f"Resource::{logical(artifacts)}/{self._prefixes['builds']}*": "published builds under "
                                                                         "this model's prefix",
            "Resource::" + arn.format("logs", "log-group:/aws/sagemaker/TrainingJobs:*"):
                "SageMaker writes each job's logs to streams it names in this log group",
            "Resource::" + arn.format("logs", f"log-group:/aws/codebuild/{project}:*"):
                "CodeBuild's generated grant on its own project's log streams",
            "Resource::" + arn.format("codebuild", f"report-group/{project}-*"):
                "CodeBuild's generated grant on its own project's report groups",
            "Resource::" + arn.format("sagemaker", "training-job/*"):
                "training job names are generated per execution (name + UUID); CDK's "
                "CreateTrainingJob grant covers create/describe/stop on them",
            "Resource::" + arn.format("sagemaker", f"training-job/{job_prefix}-*"):
                "this model's training jobs (name + UUID per execution), polled by the state machine",
        }
        findings.update({
            "Resource::" + arn.format("logs", f"log-group:{TRAINING_LOG_GROUP}:*"):
                "PutRetentionPolicy on the account's SageMaker training-job log group (its ARN form "
                "with the :* suffix)",
            f"Resource::{logical(artifacts)}/{model_name}/versions/*": "versions this pipeline put live, "
                                                                      "under this model's prefix",
            "Resource::" + arn.format("ecr", "repository/cdk-*-container-assets-*"):
                "the stack's image-asset repository (the bootstrap qualifier is chosen at bootstrap), "
                "where the function's image already is; the winner's image is pushed beside it",
            "Action::s3:Abort*": "CDK's grant for multipart uploads; limited to this model's prefixes",
        })
        for fn_arn in self._deploy_function_findings:
            findings[f"Resource::{fn_arn}:*"] = "published versions and aliases of this model's own functions"
        for finding, reason in findings.items():
            acknowledge(self, f"AwsSolutions-IAM5[{finding}]", f"{model_name}: {reason}")
        acknowledge(self._project, "AwsSolutions-CB3",
                    f"{model_name}: privileged mode builds the winning candidate's image (docker) to deploy it")


#: The one variable the build exports (the state machine reads index 0 of the exported list).
OUTCOME_VARIABLE = "MODELFN_OUTCOME"


def buildspec(model_name: str) -> dict:
    """CodeBuild: ``modelfn train --trained … --deployed`` on the job's unpacked
    ``model.tar.gz``: fetch the live version, build the candidate (convert, int8 behind the
    accuracy gate), gate it against live, and when it wins deploy it (image, functions,
    CodeDeploy of ``live``); then export the outcome and publish the build."""
    return {
        "version": "0.2",
        "env": {"exported-variables": [OUTCOME_VARIABLE]},
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.11"},
                "commands": ["python -m venv .venv", ".venv/bin/pip install -q -e ."],
            },
            "build": {
                "commands": [
                    # SageMaker may report the artifact as an https:// S3 URL; the CLI wants s3://
                    'ARTIFACT="$MODEL_ARTIFACT"; case "$ARTIFACT" in https://*) '
                    'ARTIFACT="s3://${ARTIFACT#https://*/}";; esac; '
                    'aws s3 cp "$ARTIFACT" /tmp/trained.tar.gz',
                    "mkdir -p /tmp/trained && tar -xzf /tmp/trained.tar.gz -C /tmp/trained",
                    f".venv/bin/modelfn train {model_name} --trained /tmp/trained --out build --deployed "
                    '--stack "$MODELFN_STACK" --artifacts-bucket "$ARTIFACTS_BUCKET" '
                    '--deployed-build "${CODEBUILD_SRC_DIR_deployed:-}" --outcome /tmp/outcome.json',
                    f'export {OUTCOME_VARIABLE}="$(.venv/bin/python -c \'import json; o = json.load('
                    'open("/tmp/outcome.json")); o["reason"] = o["reason"][:1500]; '
                    'print(json.dumps(o, separators=(",", ":")))\')"',
                    f'aws s3 sync build/models/{model_name} '
                    f'"s3://$ARTIFACTS_BUCKET/{model_name}/builds/$CODEBUILD_BUILD_NUMBER/" --exclude "versions/*"',
                ],
            },
        },
    }
