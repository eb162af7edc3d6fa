"""modelfn's shared runtime layer: the package every model image carries.

Model loading, V2 tensor codecs, the Open Inference Protocol, errors and observability live
here. Nothing in this package imports CDK, the build pipeline or other build-time tools.
"""
