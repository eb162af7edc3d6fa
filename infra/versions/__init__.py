"""Model versions: every build kept per version, one of them live, promotion and rollback.

Locally (:mod:`.store`) versions live under ``<out>/models/<name>/versions/<version>/`` and the
live one is ``<out>/models/<name>/`` itself (the design.md build-output contract everything
else reads); a running local stack hot-swaps to whatever becomes live. On AWS
(:mod:`.deployed`) the ``live`` alias moves through CodeDeploy. :mod:`.gate` decides whether
a candidate may replace the live version.
"""
