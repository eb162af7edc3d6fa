"""``modelfn train``: the user's training entry point run locally under SageMaker's container
contract (:mod:`.local`), its result built as the model's next version and gated against the
live one (:mod:`.lifecycle`); retraining when data lands in the local bucket (:mod:`.retrain`).
"""
