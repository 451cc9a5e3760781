"""Image recipes: ``vm_images/<name>/recipe.yml``, validated with line-numbered errors.

A recipe describes a production-shaped Debian guest (the format is documented in
``vm_images/README.md``). Its content hash (the recipe directory, every file it copies and
the builder's version) names the built image, so a changed recipe means a new image and an
unchanged one is never rebuilt.

``allowed_repositories`` (GitHub ``owner/repo`` names, ``fnmatch`` globs such as ``acme/*``,
case-insensitive) limits which repositories' pull requests may use the image; unset, any may.
It is who may use the image, not what is in it: its lines are left out of the content hash, so
setting or changing it never rebuilds the image (:func:`check_image_allowed`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diffie import yamlsafe
from diffie.errors import SandboxError

# Bumped whenever the builder's output for one recipe changes (invalidates every image).
BUILDER_VERSION = "7"
# Packages every guest needs for Diffie to drive it; added to the recipe's own.
BASE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "linux-image-amd64", "qemu-guest-agent", "ifupdown", "iproute2",
    "kmod", "procps", "util-linux-extra", "netbase", "socat",
)
DEFAULT_EXCLUDES: tuple[str, ...] = (".git", "__pycache__", "*.pyc", ".venv", "node_modules",
                                     ".mypy_cache", ".pytest_cache", ".ruff_cache")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_UNIT_RE = r"^[A-Za-z0-9@._:-]+\.(service|timer|socket|target|path|mount)$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileCopy(_Strict):
    """Copy ``src`` (relative to the recipe directory; a file or a directory) to ``dest``."""

    src: str = Field(min_length=1)
    dest: str = Field(min_length=2)
    mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$")
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDES))

    @field_validator("dest")
    @classmethod
    def _absolute(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"dest must be an absolute guest path without '..', got {value!r}")
        return value


class HttpProbe(_Strict):
    port: int = Field(gt=0, lt=65536)
    path: str = Field(default="/", pattern=r"^/")

    @field_validator("path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        from diffie.spec import ready_path_problem

        problem = ready_path_problem(value)
        if problem:
            raise ValueError(problem.replace("ready_path", "path"))
        return value


class Ready(_Strict):
    """When is the machine ready? ``command`` runs in the guest (a oneshot unit) until it exits
    0, then a marker line goes to the serial console; ``http`` is then probed from the host
    through the forwarded port."""

    command: str = Field(min_length=1)
    http: HttpProbe | None = None
    timeout_s: float = Field(default=600, gt=0, le=3600)


class VmShape(_Strict):
    memory_mib: int = Field(default=1024, ge=256, le=65536)
    vcpus: int = Field(default=2, ge=1, le=64)
    disk_mib: int = Field(default=4096, ge=512, le=1_048_576)


class Recipe(_Strict):
    description: str = ""
    suite: str = Field(default="bookworm", pattern=r"^[a-z]+$")
    mirror: str | None = Field(default=None, pattern=r"^https?://")
    packages: list[str] = Field(default_factory=list)
    vm: VmShape = Field(default_factory=VmShape)
    ports: list[int] = Field(default_factory=list, max_length=10)
    files: list[FileCopy] = Field(default_factory=list)
    run: list[str] = Field(default_factory=list)
    enable: list[str] = Field(default_factory=list)
    mask: list[str] = Field(default_factory=list)
    seed: list[str] = Field(default_factory=list)
    seed_after: list[str] = Field(default_factory=list)
    ready: Ready
    warmup: list[str] = Field(default_factory=list)
    warmup_timeout_s: float = Field(default=300, gt=0, le=3600)
    kernel_args: str = ""
    allowed_repositories: list[str] | None = None

    @field_validator("allowed_repositories")
    @classmethod
    def _repository_patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            if not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!-]+/[A-Za-z0-9_.*?\[\]!-]+", pattern):
                raise ValueError(f"not an owner/repo name or glob: {pattern!r}")
        return value

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name):
                raise ValueError(f"not a Debian package name: {name!r}")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 0 < port < 65536:
                raise ValueError(f"not a TCP port: {port}")
        if len(set(value)) != len(value):
            raise ValueError("ports are listed twice")
        return value

    @field_validator("enable", "mask", "seed_after")
    @classmethod
    def _units(cls, value: list[str]) -> list[str]:
        for unit in value:
            if not re.fullmatch(_UNIT_RE, unit):
                raise ValueError(f"not a systemd unit name: {unit!r}")
        return value

    def all_packages(self) -> list[str]:
        return sorted(set(BASE_PACKAGES) | set(self.packages))


@dataclass(frozen=True)
class LoadedRecipe:
    name: str
    dir: Path
    recipe: Recipe
    digest: str               # sha256 hex of everything the image is built from
    # where it came from: "operator" (vm_images/<name>) or "repository" (a change's tree,
    # untrusted: see load_repository_recipe)
    origin: str = "operator"
    source: str = ""          # the repository recipe's path in its tree, for people

    @property
    def key(self) -> str:
        """Directory name of the built image: ``<name>-<16 hex>``."""
        return f"{self.name}-{self.digest[:16]}"


# --- parsing -----------------------------------------------------------------------------------

def parse_recipe(text: str, *, file: str = "recipe.yml") -> Recipe:
    """Validate a recipe; errors read ``recipe.yml:12 (files[0].dest): ...``."""
    try:
        node, data = yamlsafe.load(text)
    except yaml.YAMLError as exc:
        message, line = yamlsafe.yaml_problem(exc)
        raise SandboxError(f"{file}:{line or 1}: {message}") from exc
    if node is None or not isinstance(data, dict):
        raise SandboxError(f"{file}:1: a recipe is a mapping with at least a 'ready' section")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        loc, msg = yamlsafe.validation_problem(exc)
        line = yamlsafe.line_for(yamlsafe.line_map(node), loc) or 1
        raise SandboxError(f"{file}:{line} ({yamlsafe.field_name(loc)}): {msg}") from exc


def excluded(rel: PurePosixPath, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in patterns)


def iter_source_files(src: Path, exclude: list[str]) -> list[tuple[PurePosixPath, Path]]:
    """(relative path, host path) of every file/symlink under ``src`` (or ``src`` itself)."""
    if src.is_file():
        return [(PurePosixPath(src.name), src)]
    found: list[tuple[PurePosixPath, Path]] = []
    for root, dirs, files in os.walk(src):
        rel_root = PurePosixPath(Path(root).relative_to(src).as_posix())
        dirs[:] = sorted(d for d in dirs if not excluded(rel_root / d, exclude))
        for name in sorted(files):
            rel = rel_root / name
            if not excluded(rel, exclude):
                found.append((rel, Path(root) / name))
    return found


def file_mode(path: Path) -> int:
    """The mode a copied file gets in the image: 0755 if anyone may execute it, else 0644 (the
    only mode bit git keeps; a checkout's umask never makes another image)."""
    return 0o755 if os.lstat(path).st_mode & 0o111 else 0o644


def _hash_tree(h: Any, label: str, src: Path, exclude: list[str],
               replace: dict[Path, bytes] | None = None) -> None:
    for rel, path in iter_source_files(src, exclude):
        kind = "l" if path.is_symlink() else f"{file_mode(path):o}"
        h.update(f"{label}/{rel}\0{kind}\0".encode())
        if replace and path in replace:
            h.update(replace[path])
        elif path.is_symlink():
            h.update(os.readlink(path).encode())
        else:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")


POLICY_FIELDS = ("allowed_repositories",)


def content_text(text: str) -> str:
    """The recipe's text without its policy entries (``allowed_repositories``: the lines from
    its key to the end of its value, and the comment and blank lines right above it): what the
    image's content hash covers."""
    node = yamlsafe.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return text
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    for key_node, value_node in node.value:
        if key_node.value in POLICY_FIELDS:
            end = value_node.end_mark.line
            if value_node.end_mark.column == 0 and end > key_node.start_mark.line:
                end -= 1                      # a block value ends at the next line's start
            start = key_node.start_mark.line
            while start > 0 and lines[start - 1].strip()[:1] in ("#", ""):
                start -= 1                    # its comment and the blank lines above it
            drop.update(range(start, end + 1))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def repository_allowed(recipe: Recipe, repository: str) -> bool:
    if recipe.allowed_repositories is None:
        return True
    return any(fnmatch.fnmatchcase(repository.lower(), pattern.lower())
               for pattern in recipe.allowed_repositories)


def check_image_allowed(images_dir: Path, name: str, repository: str) -> None:
    """Raise SandboxError unless the recipe of image ``name`` lets ``repository`` (GitHub
    ``owner/repo``) use it."""
    recipe = read_recipe(images_dir, name)
    if not repository_allowed(recipe, repository):
        raise SandboxError(
            f"image {name!r} may not be used by {repository}: its recipe "
            f"({images_dir / name / 'recipe.yml'}) limits it to allowed_repositories "
            f"{', '.join(recipe.allowed_repositories or [])}; the operator adds the repository "
            "there, or the spec names another image")


def read_recipe(images_dir: Path, name: str) -> Recipe:
    """Parse ``<images_dir>/<name>/recipe.yml`` (no hashing)."""
    return _read(images_dir, name)[2]


def _read(images_dir: Path, name: str) -> tuple[Path, str, Recipe]:
    if not NAME_RE.match(name):
        raise SandboxError(f"not an image name: {name!r} (lowercase letters, digits, - and _)")
    path = (images_dir / name).resolve() / "recipe.yml"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SandboxError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        known = sorted(p.parent.name for p in images_dir.glob("*/recipe.yml"))
        raise SandboxError(f"no recipe for image {name!r} at {path} ({exc.strerror}); "
                           f"known images: {', '.join(known) or 'none'}") from exc
    return path, text, parse_recipe(text, file=str(path))


def load_recipe(images_dir: Path, name: str) -> LoadedRecipe:
    """Read and validate ``<images_dir>/<name>/recipe.yml`` and hash its inputs."""
    path, text, recipe = _read(images_dir, name)
    return LoadedRecipe(name=name, dir=path.parent, recipe=recipe,
                        digest=_digest(path, text, recipe, hash_dir=True))


def _digest(path: Path, text: str, recipe: Recipe, *, hash_dir: bool,
            root: Path | None = None, shown: str = "") -> str:
    """sha256 of what the image is built from: the recipe's content (policy lines left out),
    the recipe directory (``hash_dir``: an operator recipe's own files), each copied file's
    bytes and executable bit. ``root``: every ``files[].src`` must resolve inside it."""
    rdir = path.parent
    where = shown or str(path)
    h = hashlib.sha256(f"diffie-image/{BUILDER_VERSION}\0".encode())
    if hash_dir:
        _hash_tree(h, "recipe", rdir, list(DEFAULT_EXCLUDES),
                   replace={path: content_text(text).encode("utf-8")})
    else:
        h.update(b"recipe\0" + content_text(text).encode("utf-8") + b"\0")
    for i, copy in enumerate(recipe.files):
        src = (rdir / copy.src).resolve()
        if root is not None and not src.is_relative_to(root):
            raise SandboxError(f"{where} (files[{i}].src): {copy.src!r} leaves the repository; "
                               "a repository's recipe copies only files of its own tree")
        if not src.exists():
            raise SandboxError(f"{where} (files[{i}].src): {copy.src!r} does not exist")
        if not hash_dir or not src.is_relative_to(rdir):
            _hash_tree(h, f"files{i}", src, copy.exclude)
    return h.hexdigest()


# Fields a recipe from a change's tree may not use: they act on the build host, not the guest.
HOST_FIELDS = {
    "run": "runs commands as root on the build host (chroot); put them in 'seed', which runs in "
           "the guest at first boot",
    "mirror": "makes the build host download from an address the change picks; the operator's "
              "mirror is used",
    "allowed_repositories": "is the operator's policy for named images; a repository's own "
                            "recipe is for that repository",
}


def repository_image_name(label: str) -> str:
    """An image name for a repository's recipe (``acme/shop`` -> ``acme-shop``): what
    ``diffie image list`` shows; the content hash, not the name, identifies the image."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", label.lower()).strip("-_")[:40].strip("-_")
    return slug if NAME_RE.match(slug) else "repo"


def load_repository_recipe(tree: Path, rel: str, *, name: str,
                           max_vm: VmShape | None = None) -> LoadedRecipe:
    """Read the recipe a change brings (``sandbox.recipe``: ``rel`` inside the checked-out
    ``tree``). It is untrusted: it may not use the fields that act on the build host
    (:data:`HOST_FIELDS`), it copies only files inside ``tree``, and its guest is no bigger
    than ``max_vm`` (the operator's caps). Errors name ``rel``, the line and the field."""
    root = tree.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise SandboxError(f"sandbox.recipe {rel!r} leaves the repository (a symlink?)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SandboxError(f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SandboxError(f"{rel}: the recipe named by sandbox.recipe is not in this revision "
                           f"({exc.strerror})") from None
    recipe = parse_recipe(text, file=rel)
    node = yamlsafe.compose(text)
    lines = yamlsafe.line_map(node) if node is not None else {}
    for field, why in HOST_FIELDS.items():
        if field in recipe.model_fields_set:
            line = yamlsafe.line_for(lines, (field,)) or 1
            raise SandboxError(f"{rel}:{line} ({field}): a repository's recipe may not use "
                               f"'{field}': it {why}")
    for field, cap in (max_vm.model_dump() if max_vm else {}).items():
        value = getattr(recipe.vm, field)
        if value > cap:
            line = yamlsafe.line_for(lines, ("vm", field)) or 1
            raise SandboxError(f"{rel}:{line} (vm.{field}): {value} is more than the operator "
                               f"allows for a repository's image ({cap}; "
                               f"DIFFIE_MAX_REPO_VM_{field.upper()})")
    digest = _digest(path, text, recipe, hash_dir=False, root=root, shown=rel)
    return LoadedRecipe(name=name, dir=path.parent, recipe=recipe, digest=digest,
                        origin="repository", source=rel)
