"""Find and pin images: the reference grammar, ECR hosts, image fields, pinning."""


def preload() -> None:
    """Import what pinning needs (~40 ms in a fresh process): run while kustomize builds, it
    costs no wall time on a machine with a spare core."""
    from cmp.images import pin  # noqa: F401
    from cmp.registry import cache  # noqa: F401
