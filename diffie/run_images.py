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
    VmShape,
    check_image_allowed,
    load_repository_recipe,
    read_recipe,
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
        # parsed, not hashed: the lease looks the built image up by the recipe's content
        enabled = tuple(read_recipe(settings.vm_images_dir, sandbox.image).enable)
    except SandboxError:
        enabled = ()            # the lease says why the image is unusable
    return SideImage(sandbox.image, sandbox.image, enabled)


def side_images(settings: Settings, build: ImageBuilder | None, base_sandbox: SandboxSpec,
                head_sandbox: SandboxSpec, change: ChangeInput, base_tree: Path,
                head_tree: Path, say: Callable[[str], None]) -> tuple[SideImage, SideImage]:
    """(base's image, head's image), each from its side's sandbox section, building a
    repository's recipe where needed (an untrusted head's sandbox and recipe come from the
    base). Raises RunError naming the recipe's file, line and field when it is invalid."""
    name = repository_image_name(change.repository or Path(change.repo or "repo").name)
    head_tree_for_recipe = base_tree if change.untrusted_head else head_tree
    head = _wanted(settings, head_sandbox, change, head_tree_for_recipe, name,
                   "base" if change.untrusted_head else "head")
    if (base_sandbox.recipe is not None and not change.untrusted_head
            and not (base_tree / base_sandbox.recipe).exists()):
        base = head                   # the pull request adds the recipe: one image for both
    else:
        base = _wanted(settings, base_sandbox, change, base_tree, name, "base")
    built: dict[str, SideImage] = {}
    for side, wanted in (("base", base), ("head", head)):
        if isinstance(wanted, SideImage):
            continue
        if wanted.digest in built:
            continue
        if build is None:
            raise RunError("this worker cannot build VM images, and the spec names a "
                           f"repository recipe ({wanted.source}); run the job in a worker with "
                           "libvirt")
        say(f"{side}: image from {wanted.source} ({wanted.key}): building it if it is not "
            "cached")
        try:
            key = build(wanted, _prefixed(say, f"{side} image: "))
        except SandboxError as exc:
            raise RunError(f"the {side}'s VM image (from {wanted.source}) could not be built: "
                           f"{exc}") from exc
        built[wanted.digest] = SideImage(key, f"{wanted.source} ({key})",
                                         tuple(wanted.recipe.enable))
    return _done(base, built), _done(head, built)


def _wanted(settings: Settings, sandbox: SandboxSpec, change: ChangeInput, tree: Path,
            name: str, side: str) -> SideImage | LoadedRecipe:
    if sandbox.image is not None:
        return operator_image(settings, sandbox, change.repository or "")
    assert sandbox.recipe is not None
    return _load(tree, sandbox.recipe, name, side, repo_vm_caps(settings))


def _done(wanted: SideImage | LoadedRecipe, built: dict[str, SideImage]) -> SideImage:
    return wanted if isinstance(wanted, SideImage) else built[wanted.digest]


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: say(prefix + line)


def repo_vm_caps(settings: Settings) -> VmShape:
    """The biggest guest a repository's own recipe may ask for (DIFFIE_MAX_REPO_VM_*)."""
    return VmShape(memory_mib=settings.max_repo_vm_memory_mib,
                   vcpus=settings.max_repo_vm_vcpus, disk_mib=settings.max_repo_vm_disk_mib)


def _load(tree: Path, rel: str, name: str, side: str, caps: VmShape) -> LoadedRecipe:
    try:
        return load_repository_recipe(tree, rel, name=name, max_vm=caps)
    except SandboxError as exc:
        raise RunError(f"{side}: {exc}") from exc
