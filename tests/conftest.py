"""Shared fixtures. Each support module registers its own fixtures as a pytest plugin."""

pytest_plugins: list[str] = [
    "tests.support.fake_kube",
    "tests.support.moto_ecr",
    "tests.support.fake_ecr",
    "tests.support.snapshots",
]
