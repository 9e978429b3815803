"""What each task does, in terms of the package's modules; tasks.py calls these with loaded Settings."""

from __future__ import annotations

from .config import Settings


def build_image(settings: Settings, dry_run: bool) -> None:
    from . import imagebuild

    imagebuild.build(settings, dry_run=dry_run)


def verify_image(settings: Settings, host: str, port: int, user: str | None, key: str | None) -> None:
    from . import imagebuild

    imagebuild.verify(settings, host=host, port=port, user=user, key=key)


def render(settings: Settings) -> None:
    raise NotImplementedError("render: issue 3")


def validate(settings: Settings) -> None:
    raise NotImplementedError("validate: issues 2 and 3")


def launch(settings: Settings, image: str | None, wait_cluster: bool) -> None:
    raise NotImplementedError("launch: issue 4")


def status(settings: Settings) -> None:
    raise NotImplementedError("status: issue 4")


def destroy(settings: Settings, yes: bool) -> None:
    raise NotImplementedError("destroy: issue 4")
