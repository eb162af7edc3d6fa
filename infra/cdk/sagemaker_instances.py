"""What an ML instance type allows, defined once for training jobs and endpoints.

Local (NVMe instance-store) storage: SageMaker encrypts it with a hardware module on the
instance and refuses a KMS key for it. The API reference says so for every request that
takes one: ``ResourceConfig.VolumeKmsKeyId`` (CreateTrainingJob: "You can't request a
VolumeKmsKeyId when using an instance type with local storage") and
``CreateEndpointConfig.KmsKeyId`` ("If you specify a value for KmsKeyId when using any
nitro-based instances with local storage, the call to CreateEndpointConfig fails").
``ResourceConfig.VolumeSizeInGB`` names the families: "ML instance families with the
NVMe-type instance storage include ml.p4d, ml.g4dn, and ml.g5"; the rest follow EC2's
instance-store table (a ``d`` in the family's attributes: m5d, c5d, r5d, g4dn, p3dn, p4d,
m6id …; and the GPU/accelerator families whose every size ships NVMe: g5, g6, g6e, p5, trn1).
"""

from __future__ import annotations

import re

#: Families whose every size has NVMe instance storage although their name has no ``d``.
NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6", "trn1", "trn1n", "trn2"})
#: ``<letters><generation><attributes>``: a ``d`` among the attributes means instance store.
_FAMILY = re.compile(r"^(?P<kind>[a-z]+?)(?P<gen>\d+)(?P<attrs>[a-z-]*)$")


def family(instance_type: str) -> str:
    """``ml.g5.xlarge`` → ``g5``."""
    parts = instance_type.removeprefix("ml.").split(".")
    if len(parts) < 2 or not parts[0]:
        raise ValueError(f"{instance_type!r} is not an ML instance type (e.g. ml.g5.xlarge)")
    return parts[0]


def has_local_storage(instance_type: str) -> bool:
    """True when the instance's storage is local NVMe: no KMS key may be requested for it."""
    fam = family(instance_type)
    if fam in NVME_FAMILIES:
        return True
    m = _FAMILY.match(fam)
    return bool(m and "d" in m.group("attrs"))


def volume_kms_key(instance_type: str, key):
    """``key`` where SageMaker accepts a volume key for ``instance_type``, else None."""
    return None if has_local_storage(instance_type) else key
