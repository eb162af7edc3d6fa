"""What bills while nothing is called: per deploy target and feature, USD per month.

``modelfn fit`` adds these to the traffic cost of each option (README "What bills while
idle" has the same table). us-east-1 list prices; each constant names its pricing page.
Estimates, not invoices: they assume the defaults the constructs deploy (alarms per function,
versions kept: :data:`KEEP_VERSIONS`, one image per deploy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from layers.aliases import KEEP_VERSIONS  # noqa: F401  (versions kept per function: the estimate counts them)

SECONDS_PER_MONTH = 30 * 24 * 3600
HOURS_PER_MONTH = 730
GB = 1024**3
#: CloudWatch standard-resolution alarm, per alarm-month (aws.amazon.com/cloudwatch/pricing).
ALARM_USD = 0.10
#: CloudWatch dashboard, per dashboard-month beyond the account's first three (same page).
DASHBOARD_USD = 3.00
#: KMS customer managed key, per key-month (aws.amazon.com/kms/pricing).
KMS_KEY_USD = 1.00
#: S3 Standard storage per GB-month (aws.amazon.com/s3/pricing).
S3_GB_USD = 0.023
#: ECR private repository storage per GB-month (aws.amazon.com/ecr/pricing).
ECR_GB_USD = 0.10
#: Lambda SnapStart (Python) cache per GB-second of each active version's snapshot, minimum
#: 3 hours (aws.amazon.com/lambda/pricing "SnapStart"); restores are billed per GB restored
#: on each cold start ($0.0001397998/GB), which follows traffic, not idleness.
SNAPSTART_CACHE_USD_PER_GB_S = 0.0000015046
#: Provisioned concurrency per GB-second allocated (aws.amazon.com/lambda/pricing).
PROVISIONED_USD_PER_GB_S = {"x86_64": 0.0000041667, "arm64": 0.0000033334}
#: An SQS event source mapping long-polls its queue even when it is empty: about five
#: pollers × 3 ReceiveMessage calls a minute; $0.40 per million requests beyond the free
#: million a month (aws.amazon.com/sqs/pricing, Lambda developer guide "Using Lambda with SQS").
SQS_IDLE_REQUESTS = 5 * 3 * 60 * HOURS_PER_MONTH
SQS_USD_PER_REQUEST = 0.40 / 1_000_000
#: Alarms the constructs create: Lambda model = api (errors, p99) + batch (errors, p99) +
#: the batch DLQ; SageMaker model = the async DLQ, its scale-from-zero alarm, and two per
#: target-tracking policy (real-time and async).
ALARMS = {"lambda": 5, "sagemaker": 1 + 1 + 2 * 2}
#: Images kept in the CDK asset repository (bootstrap repositories have no lifecycle): one
#: per deploy of a changed model; a year of weekly deploys.
IMAGES_KEPT = 52
#: Minutes an asynchronous endpoint runs its first instance after it is created (it starts at
#: InitialInstanceCount 1 and scales in after the 600 s cooldown plus alarm evaluation).
ASYNC_START_MINUTES = 15


@dataclass(frozen=True)
class IdleItem:
    item: str
    usd: float
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def idle_costs(*, target: str, memory_mb: int, architecture: str = "x86_64", snapstart: bool = False,
               provisioned: int = 0, image_bytes: int = 0, model_bytes: int = 0, kept_versions: int = 5,
               instance_hourly: float = 0.0, trained: bool = False, deploys_per_month: int = 4
               ) -> list[IdleItem]:
    """What one model deployed to ``target`` bills per month with no traffic."""
    gb = memory_mb / 1024
    items = [IdleItem("CloudWatch alarms", ALARMS[target] * ALARM_USD,
                      f"{ALARMS[target]} alarms × ${ALARM_USD:.2f}")]
    if target == "lambda":
        if snapstart:
            items.append(IdleItem(
                "SnapStart cache", gb * SECONDS_PER_MONTH * SNAPSTART_CACHE_USD_PER_GB_S,
                f"{memory_mb} MB snapshot of the live version, all month; each kept version with "
                "SnapStart is cached too while active (Lambda stops caching versions not invoked for 14 days)"))
        if provisioned:
            items.append(IdleItem(
                "provisioned concurrency",
                provisioned * gb * SECONDS_PER_MONTH * PROVISIONED_USD_PER_GB_S[architecture],
                f"{provisioned} × {memory_mb} MB allocated all month"))
        items.append(IdleItem("SQS polling", max(0.0, SQS_IDLE_REQUESTS * SQS_USD_PER_REQUEST),
                              f"~{SQS_IDLE_REQUESTS:,} empty receives a month by the batch event source "
                              "(free within the account's first million requests)"))
        items.append(IdleItem("images in the CDK asset repository", image_bytes / GB * IMAGES_KEPT * ECR_GB_USD,
                              f"{image_bytes / GB:.2f} GB image × {IMAGES_KEPT} deploys kept (no lifecycle on "
                              "the bootstrap repository; shared layers are stored once, so this is an upper bound)"))
        items.append(IdleItem("kept Lambda versions", 0.0,
                              f"{kept_versions} versions kept for rollback; code storage is free up to 75 GB "
                              "(images count in ECR above)"))
    else:
        items.append(IdleItem(
            "asynchronous endpoint after each create", instance_hourly * ASYNC_START_MINUTES / 60 * deploys_per_month,
            f"starts at 1 instance for ~{ASYNC_START_MINUTES} min before scaling to zero, {deploys_per_month} "
            "creates a month (updates keep the scaled count: RetainAllVariantProperties)"))
        items.append(IdleItem("serving image in the CDK asset repository",
                              image_bytes / GB * IMAGES_KEPT * ECR_GB_USD,
                              f"{image_bytes / GB:.2f} GB × {IMAGES_KEPT} deploys kept (GPU images are GBs)"))
    if trained:
        items.append(IdleItem("KMS key (training)", KMS_KEY_USD, "one customer managed key for the app's training"))
        items.append(IdleItem("versioned training artifacts", model_bytes / GB * (kept_versions + 2) * S3_GB_USD,
                              "published versions and builds; the bucket expires noncurrent object versions "
                              "after 30 days"))
    return items


def shared_idle_costs() -> list[IdleItem]:
    """Once per app, whatever the models: the dashboard."""
    return [IdleItem("CloudWatch dashboard", DASHBOARD_USD, "one per app; free within the account's first three")]
