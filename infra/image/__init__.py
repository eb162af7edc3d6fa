"""Container images of the catalog's models: the locked closure (``lock``), the engines
(``engine``), staging + building (``build``), the ``modelfn image`` verb (``command``) and
the offline stand-in for the AWS base image (``standin``)."""
