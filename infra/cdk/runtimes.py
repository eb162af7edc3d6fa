"""The managed runtime of every zip function (proxy, async-batch glue, retraining starter).

The model images run Python 3.13 (layers/Dockerfile); the zip functions run the same
interpreter, so the runtime code they carry is tested on the versions it meets.
"""

from aws_cdk import aws_lambda as lambda_

ZIP_RUNTIME = lambda_.Runtime.PYTHON_3_13
#: Why it is not "the latest" when cdk-nag knows a newer one (AwsSolutions-L1).
ZIP_RUNTIME_REASON = ("python3.13, the interpreter of the model images (layers/Dockerfile), so the "
                      "runtime code every function carries is tested on the versions it meets")
