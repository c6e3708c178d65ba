"""Every label and file name conduitctl uses to mark what it owns, in one place."""

from __future__ import annotations

from dataclasses import dataclass

LABEL_OWNER = "io.conduitctl.owner"  # value: "conduitctl"
LABEL_CLUSTER = "io.conduitctl.cluster"
LABEL_INDEX = "io.conduitctl.index"
LABEL_CONFIG_HASH = "io.conduitctl.config-hash"
LABEL_PROFILE = "io.conduitctl.profile"
# A conduit-manager-layout container (or volume) made by `rollback --legacy`; value: the
# cluster name. Never combined with LABEL_OWNER: the runtime must not take it for its own.
LABEL_LEGACY = "io.conduitctl.legacy"
OWNER = "conduitctl"
LEGACY_PREFIX = "conduit"  # conduit-manager's fixed names, whatever our cluster is called


def volume_name(cluster: str, index: int) -> str:
    """The data volume of backend `index`: it holds the identity key, so it outlives containers."""
    return f"{cluster}-data-{index}"


# --- conduit-manager's names -----------------------------------------------------------


@dataclass(frozen=True)
class LegacySlot:
    """conduit-manager's names for backend `index` (1-based)."""

    index: int
    container: str
    volume: str


def legacy_slot(index: int) -> LegacySlot:
    """1 -> conduit / conduit-data; i >= 2 -> conduit-{i} / conduit-data-{i}.

    Raises:
        ValueError: `index` < 1.
    """
    if index < 1:
        raise ValueError(f"backend index {index}: indexes start at 1")
    if index == 1:
        return LegacySlot(1, LEGACY_PREFIX, f"{LEGACY_PREFIX}-data")
    return LegacySlot(index, f"{LEGACY_PREFIX}-{index}", f"{LEGACY_PREFIX}-data-{index}")


def legacy_index(container: str) -> int | None:
    """The backend index a legacy container name stands for, or None when it is not one."""
    if container == LEGACY_PREFIX:
        return 1
    head, _, tail = container.rpartition("-")
    if head != LEGACY_PREFIX or not tail.isdigit() or tail.startswith("0"):
        return None
    index = int(tail)
    return index if index >= 2 else None
