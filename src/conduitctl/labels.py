"""Every label and file name conduitctl uses to mark what it owns, in one place."""

from __future__ import annotations

LABEL_OWNER = "io.conduitctl.owner"  # value: "conduitctl"
LABEL_CLUSTER = "io.conduitctl.cluster"
LABEL_INDEX = "io.conduitctl.index"
LABEL_CONFIG_HASH = "io.conduitctl.config-hash"
LABEL_PROFILE = "io.conduitctl.profile"
# A conduit-manager-layout container (or volume) made by `rollback --legacy`; value: the
# cluster name. Never combined with LABEL_OWNER: the runtime must not take it for its own.
LABEL_LEGACY = "io.conduitctl.legacy"
OWNER = "conduitctl"


def volume_name(cluster: str, index: int) -> str:
    """The data volume of backend `index`: it holds the identity key, so it outlives containers."""
    return f"{cluster}-data-{index}"
