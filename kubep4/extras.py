"""Optional dependencies: the pip extras of pyproject.toml and the error that names them.

The services and the CLI start with the core dependencies alone; a feature that needs an extra
imports it where it is used and, when it is missing, raises :class:`MissingExtra`, whose message
says what to install::

    try:
        from kubernetes import client
    except ModuleNotFoundError as e:
        raise MissingExtra("kubernetes", "--placement=kubernetes") from e
"""
from __future__ import annotations

#: top-level import name -> (extra, what it is); pyproject.toml's [project.optional-dependencies]
EXTRAS = {
    "kubernetes": ("kube", "the kubernetes client"),
    "docker": ("docker", "the docker SDK"),
    "matplotlib": ("plot", "matplotlib"),
    "aiohttp": ("traces", "aiohttp"),
}


class MissingExtra(ModuleNotFoundError):
    """A feature needs a package of an extra that is not installed."""

    def __init__(self, package: str, feature: str):
        extra, what = EXTRAS[package]
        self.extra = extra
        super().__init__(f"{feature} needs {what}: pip install 'kubep4[{extra}]'", name=package)
