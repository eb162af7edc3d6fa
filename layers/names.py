"""Names shared by the runtime and the infrastructure, defined once.

The CDK app sets these environment variables on each function and the local stack sets the
same ones on each local function process; the runtime reads them. Both sides import this
module so a name can never drift between them. Output keys of the CDK stacks live here too.
"""

from __future__ import annotations

# --- environment variables (set by infra, read by the runtime) ---------------------------
ENV_MODEL_DIR = "MODEL_DIR"
"""Directory holding ``model.onnx`` and ``manifest.json``. Required to serve."""

ENV_INTRA_OP_THREADS = "MODELFN_INTRA_OP_THREADS"
"""Optional override of onnxruntime's intra-op thread count (default: CPUs available)."""

ENV_ORT_SPINNING = "MODELFN_ORT_SPINNING"
"""Optional: ``1``/``0`` lets onnxruntime's intra-op workers spin between ops or not (default:
on only inside Lambda when every intra-op thread has a whole vCPU of the function's memory;
the measurements are in :mod:`layers.model`'s docstring)."""

ENV_LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
"""Set by Lambda: the function's memory in MB, which sets its CPU share (:data:`LAMBDA_MB_PER_VCPU`)."""

ENV_EXECUTION_PROVIDER = "MODELFN_EXECUTION_PROVIDER"
"""Where a generative model's decoding loop runs: ``cpu`` (default: Lambda, CPU instances, the
local stack) or ``cuda`` (a SageMaker GPU instance, ``ml.g*``/``ml.p*``). Set from the plan
(:attr:`infra.targets.plan.ImagePlan.execution_provider`); ``cuda`` where the image's
onnxruntime-genai has no CUDA or no GPU is visible fails the start with the reason."""

EXECUTION_PROVIDERS = ("cpu", "cuda")
"""The values of :data:`ENV_EXECUTION_PROVIDER` (onnxruntime-genai's provider names)."""

ENV_SAM_LOCAL = "AWS_SAM_LOCAL"
"""Set by ``sam local``: Lambda's environment, but on a host shared with everything else."""

LAMBDA_MB_PER_VCPU = 1769
"""Lambda allocates CPU in proportion to memory: one full vCPU at 1,769 MB (6 at 10,240 MB)."""

ENV_MAX_REQUEST_BYTES = "MODELFN_MAX_REQUEST_BYTES"
"""Optional override of the largest accepted request body (default: Lambda's 6 MB)."""

ENV_IDEMPOTENCY_TABLE = "MODELFN_IDEMPOTENCY_TABLE"
"""DynamoDB table for batch idempotency records."""

ENV_BATCH_MEMORY_BUDGET_MB = "MODELFN_BATCH_MEMORY_BUDGET_MB"
"""Memory the batch function may spend on one chunk of rows (default derived from limit)."""

ENV_BATCH_RETRY_DELAY_S = "MODELFN_BATCH_RETRY_DELAY_S"
"""First retry delay of a failed batch message (s); each later retry waits 4x longer."""

ENV_SAGEMAKER_ENDPOINT = "MODELFN_SAGEMAKER_ENDPOINT"
"""Name of the SageMaker endpoint a proxy function forwards to (sagemaker-target models)."""

ENV_BATCH_MODEL = "MODELFN_BATCH_MODEL"
"""The model whose ``<model>/in/`` objects the asynchronous-inference glue function submits."""

ENV_RETRAIN_STATE_MACHINES = "MODELFN_RETRAIN_STATE_MACHINES"
"""JSON ``{model name: state machine ARN}`` for the retraining starter function."""

ENV_PROXY_TIMEOUT_S = "MODELFN_PROXY_TIMEOUT_S"
"""The SageMaker proxy function's own timeout (s); its client's timeouts fit inside it."""

ENV_PROXY_MODEL = "MODELFN_MODEL_NAME"
"""The model a SageMaker proxy function serves (its metrics dimension and log key)."""

ENV_PROXY_MODEL_VERSION = "MODELFN_MODEL_VERSION"
"""That model's version (the manifest's), in the proxy's logs and EMF metadata."""

ENV_POWERTOOLS_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

# --- defaults ------------------------------------------------------------------------------
DEFAULT_IDEMPOTENCY_TABLE = "modelfn-idempotency"
DEFAULT_BATCH_BUCKET = "modelfn-batch"
DEFAULT_BATCH_RETRY_DELAY_S = 60
BATCH_RETRY_GROWTH = 4
"""Each retry of a failed batch message waits this many times longer than the one before."""
METRICS_NAMESPACE = "modelfn"
SERVICE_NAME = "modelfn"

# --- where the model directory lives in each image -----------------------------------------
IMAGE_MODEL_DIR = "/var/task/model"
"""The per-model Lambda image's model directory (``$LAMBDA_TASK_ROOT/model``)."""
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
"""Where SageMaker unpacks ``model.tar.gz`` inside a serving container."""

# --- artifact layout -----------------------------------------------------------------------
MODEL_FILE = "model.onnx"
GENERATION_DIR = "generation"
"""A generative model's onnxruntime-genai folder, in place of ``model.onnx`` (infra/kinds/generation.py)."""
MANIFEST_FILE = "manifest.json"
VERIFIED_FILE = "verified.json"
"""Written next to the model when its Lambda image is staged: the artifact's sha256, checked
then against the manifest, and each artifact file's size (layers/manifest.py ``verify_artifact``)."""
ENV_LAMBDA_TASK_ROOT = "LAMBDA_TASK_ROOT"
MANIFEST_GRAPH_OPTIMIZATION = "graph_optimization"
"""Manifest key of how the build optimized ``model.onnx`` for onnxruntime (infra/build/ort_offline.py)."""
DISABLED_OPTIMIZERS = "disabled_optimizers"
"""Under :data:`MANIFEST_GRAPH_OPTIMIZATION`: onnxruntime optimizers the session must not run (the
build measured the graph faster without them and gated it so)."""

# --- pre/post-processing (layers/processing): the manifest block and the classification task's
# outputs (an input kind's public input is named after the kind, see layers/kinds)
MANIFEST_PROCESSING = "processing"
"""Manifest key of the pre/post-processing block; its files sit next to ``model.onnx``."""
LABEL_OUTPUT = "label"
SCORES_OUTPUT = "scores"
EMBEDDING_OUTPUT = "embedding"
"""Embeddings/feature extraction: FP32 ``[-1, dim]``, one vector per text."""
ENTITIES_OUTPUT = "entities"
"""Token classification: BYTES ``[-1]``, one JSON list of entities per text."""

# --- training (the SageMaker container contract, functions/training/train.py) -------------
TRAIN_PREFIX = "train"
"""New objects under ``s3://<bucket>/<model>/train/`` retrain the model."""
ENV_TRAINING_ENTRY_POINT = "MODELFN_ENTRY_POINT"
"""The user's ``module:function`` or ``script.py[:function]`` (else hyperparameter below)."""
ENV_TRAINING_CODE_DIR = "MODELFN_CODE_DIR"
"""Directory the entry point is imported from (else channel ``code``, else /opt/ml/code)."""
HP_ENTRY_POINT = "modelfn_entry_point"
"""Hyperparameter that carries the entry point into a SageMaker training job."""
#: data-parallel training (torchrun's names): this process's rank, how many there are, and
#: where rank 0 listens for the process group
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
#: torchrun's: how many processes this instance runs (its GPUs); SageMaker's GPU count
ENV_LOCAL_WORLD_SIZE, ENV_SM_NUM_GPUS = "LOCAL_WORLD_SIZE", "SM_NUM_GPUS"
ENV_MASTER_ADDR, ENV_MASTER_PORT = "MASTER_ADDR", "MASTER_PORT"
#: MASTER_PORT on SageMaker's multi-instance jobs (hosts algo-1..N share a network)
TRAINING_MASTER_PORT = 29500
ENV_CONTROL = "MODELFN_CONTROL"
"""A model's control function (training over HTTPS): JSON {"model", "state_machine_arn",
"hyperparameters", "data"} (infra/cdk/constructs/control_api.py → functions/control)."""
TRAINED_TORCH_FILE = "model.pt"
"""A returned ``nn.Module``, saved whole with ``torch.save`` (the build converts it)."""
TRAINED_SKLEARN_FILE = "model.joblib"
"""A returned sklearn estimator, saved with ``joblib.dump``."""
TRAINED_HF_DIR = "hf"
"""A returned Hugging Face model (``save_pretrained``), e.g. a fine-tuned causal LM: built as ``hf:``."""
TRAINING_REPORT_FILE = "training.json"
"""What the run did: entry point, hyperparameters, data fingerprint, device, seconds."""

# --- batch layout (s3://<bucket>/<model>/{in,out,errors}/<key>) ----------------------------
BATCH_IN = "in"
BATCH_OUT = "out"
BATCH_ERRORS = "errors"

# --- Lambda handler strings (the image CMD) ------------------------------------------------
API_HANDLER = "functions.api.handler.handler"
BATCH_HANDLER = "functions.batch.handler.handler"
SAGEMAKER_SERVE_MODULE = "functions.sagemaker.serve"
STREAM_MODULE = "functions.stream.runtime"
"""The streaming function's runtime (``python3 -m`` it: the image's entry point for a generative
model's function URL, which the managed runtime cannot stream to)."""
STREAM_TIMEOUT_S = 300
"""The streaming function's timeout: a function URL stream may last 15 minutes; five bound a
runaway completion's bill while leaving a long one (thousands of tokens) room."""
ENV_AUTH = "MODELFN_AUTH"
"""The catalog ``auth`` of the streaming function's URL; ``jwt``: the function verifies bearer
tokens itself (layers/http/jwt_auth.py), since function URLs have no JWT authorizer."""
ENV_JWT_ISSUER = "MODELFN_JWT_ISSUER"
"""The accepted token issuer (CDK context ``modelfn:jwt_issuer``, as the HTTP API's authorizer)."""
ENV_JWT_AUDIENCE = "MODELFN_JWT_AUDIENCE"
"""The accepted audiences, comma-separated (CDK context ``modelfn:jwt_audience``)."""

# --- Lambda SnapStart (set by the Lambda service; the local stack sets it the same way) -----
ENV_LAMBDA_INIT_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
"""``on-demand``, ``provisioned-concurrency`` or ``snap-start`` (Lambda sets it)."""
INIT_TYPE_ON_DEMAND = "on-demand"
INIT_TYPE_SNAPSTART = "snap-start"
SNAPSTART_MAX_EPHEMERAL_MB = 512
"""SnapStart does not support more ``/tmp`` than Lambda's default 512 MB."""

# --- hard limits (design.md "Hard limits to design around") --------------------------------
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
HTTP_API_PAYLOAD_BYTES = 10 * 1024 * 1024
HTTP_API_TIMEOUT_S = 30
LAMBDA_MAX_MEMORY_MB = 10_240
LAMBDA_MAX_IMAGE_BYTES = 10 * 1024**3
LAMBDA_INIT_LIMIT_S = 10
LAMBDA_MAX_TIMEOUT_S = 900
SAGEMAKER_PAYLOAD_BYTES = 6 * 1024 * 1024
SAGEMAKER_TIMEOUT_S = 60
SQS_MAX_VISIBILITY_TIMEOUT_S = 12 * 3600
SAGEMAKER_ASYNC_TIMEOUT_S = 3600
"""The longest an asynchronous inference (one batch object on a heavy model) may run."""
#: the V2 binary tensor extension's header: the length of the JSON part of a body
HEADER_LENGTH = "Inference-Header-Content-Length"
SAGEMAKER_BATCH_ROUTE = "/batch"
"""Custom attribute ``route=POST /batch``: the serving container runs one S3 object through the
batch job (asynchronous inference of a heavy model, functions/async_batch)."""
PROXY_TIMEOUT_S = HTTP_API_TIMEOUT_S - 1
"""The SageMaker proxy function's timeout: just under the HTTP API's integration timeout."""

# --- CloudFormation output keys ------------------------------------------------------------
OUTPUT_API_URL = "ApiUrl"
OUTPUT_BATCH_BUCKET = "BatchBucketName"


def output_infer_url(model_name: str) -> str:
    """Output key of one model's infer URL, e.g. ``InferUrlDigitsMlp``."""
    return "InferUrl" + "".join(part.capitalize() for part in model_name.split("-"))


def output_stream_url(model_name: str) -> str:
    """Output key of a generative model's streaming function URL, e.g. ``StreamUrlTinyGpt``."""
    return "StreamUrl" + "".join(part.capitalize() for part in model_name.split("-"))


def output_deployment(model_name: str) -> str:
    """Output key of a Lambda model's functions and CodeDeploy groups (a JSON object per kind,
    ``api``/``batch``: ``function``, ``application``, ``group``), e.g. ``DeploymentDigitsMlp``;
    ``modelfn promote/rollback --deployed`` reads it."""
    return "Deployment" + "".join(part.capitalize() for part in model_name.split("-"))

#: the OpenAI router function's settings (JSON: ``registry`` SSM path, ``auth`` of its routes,
#: ``routes`` routeKey → body field; infra/cdk/constructs/openai_router.py)
ENV_OPENAI_ROUTER = "MODELFN_OPENAI_ROUTER"
OPENAI_ROUTER_HANDLER = "functions.openai_router.handler.handler"


def router_registry_path(shared_stack: str) -> str:
    """The SSM path under which each model stack registers its model for the OpenAI router
    (one parameter per model: ``<path>/<model>``)."""
    return f"/modelfn/{shared_stack}/models"
