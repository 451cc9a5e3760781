"""Which VM image each side of a repo-mode run restores, and building a repository's own.

A spec names its sandbox one of two ways:

- ``sandbox.image: shop``: the operator's recipe ``vm_images/shop`` (built by the operator with
  ``diffie image build``; its ``allowed_repositories`` says which repositories may use it).
  Both sides restore it.
- ``sandbox.recipe: .diffie/image.yml``: a recipe in the repository, so the production shape
  lives and changes with the code. Each side uses the recipe *of its own revision* (a pull
  request that changes the recipe is verified on the new image, its base on the old one); a
  base without the file uses the head's. The image is content-addressed, built the first time
  a run needs it (the build's progress is the run's progress) and reused by every run whose
  recipe and copied files are the same. An untrusted head (a fork) takes the base's recipe,
  like the rest of its sandbox. A repository recipe may not act on the build host
  (:data:`diffie.sandbox.recipe.HOST_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffie.config import Settings
from diffie.errors import RunError, SandboxError
from diffie.run_store import ChangeInput
from diffie.sandbox.journal import service_units
from diffie.sandbox.recipe import (
    LoadedRecipe,
    check_image_allowed,
    load_recipe,
    load_repository_recipe,
    repository_image_name,
)
from diffie.spec import SandboxSpec

# Builds (or finds) a recipe's image and returns what Sandbox.lease takes: the image's key.
ImageBuilder = Callable[[LoadedRecipe, Callable[[str], None]], str]


@dataclass(frozen=True)
class SideImage:
    lease: str                  # for Sandbox.lease: an operator image's name or a built key
    label: str                  # for people and the run's metadata
    enabled: tuple[str, ...]    # the units the recipe enables (the app's journal)

    def units(self, sandbox: SandboxSpec) -> list[str]:
        """The systemd units whose journal is the app's log (:func:`service_units`)."""
        return service_units(sandbox.deploy, list(self.enabled))


def operator_image(settings: Settings, sandbox: SandboxSpec, repository: str) -> SideImage:
    assert sandbox.image is not None
    if repository:
        check_image_allowed(settings.vm_images_dir, sandbox.image, repository)
    try:
        enabled = tuple(load_recipe(settings.vm_images_dir, sandbox.image).recipe.enable)
    except SandboxError:
        enabled = ()            # the lease says why the image is unusable
    return SideImage(sandbox.image, sandbox.image, enabled)


def side_images(settings: Settings, build: ImageBuilder | None, sandbox: SandboxSpec,
                change: ChangeInput, base_tree: Path, head_tree: Path,
                say: Callable[[str], None]) -> tuple[SideImage, SideImage]:
    """(base's image, head's image), building a repository's recipe where needed. Raises
    RunError naming the recipe's file, line and field when it is invalid."""
    if sandbox.image is not None:
        image = operator_image(settings, sandbox, change.repository or "")
        return image, image
    assert sandbox.recipe is not None
    if build is None:
        raise RunError("this worker cannot build VM images, and the spec names a repository "
                       f"recipe ({sandbox.recipe}); run the job in a worker with libvirt")
    name = repository_image_name(change.repository or Path(change.repo or "repo").name)
    rel = sandbox.recipe
    head = _load(head_tree if not change.untrusted_head else base_tree, rel, name,
                 "base" if change.untrusted_head else "head")
    if change.untrusted_head or not (base_tree / rel).exists():
        base = head
    else:
        base = _load(base_tree, rel, name, "base")
    built: dict[str, SideImage] = {}
    for side, loaded in (("base", base), ("head", head)):
        if loaded.digest in built:
            continue
        say(f"{side}: image from {rel} ({loaded.key}): building it if it is not cached")
        try:
            key = build(loaded, _prefixed(say, f"{side} image: "))
        except SandboxError as exc:
            raise RunError(f"the {side}'s VM image (from {rel}) could not be built: "
                           f"{exc}") from exc
        built[loaded.digest] = SideImage(key, f"{rel} ({key})", tuple(loaded.recipe.enable))
    return built[base.digest], built[head.digest]


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: say(prefix + line)


def _load(tree: Path, rel: str, name: str, side: str) -> LoadedRecipe:
    try:
        return load_repository_recipe(tree, rel, name=name)
    except SandboxError as exc:
        raise RunError(f"{side}: {exc}") from exc
