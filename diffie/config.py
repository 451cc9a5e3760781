"""Settings: every knob is a ``DIFFIE_*`` environment variable. Built once, passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from diffie import spec_limits as lim
from diffie.approval_policy import parse_overrides
from diffie.sandbox.confine import default_image_cache_dir
from diffie.url_mode import parse_allowed


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/diffie`` (``~/.local/share/diffie``): the same store whatever the
    current directory, so ``diffie runs show ID`` finds a run from anywhere."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "diffie"


def default_vm_images_dir() -> Path:
    """The operator's image recipes: ``vm_images/`` of the Diffie checkout this package runs
    from (the bundled ``shop`` recipe) when there is one, else ``$XDG_CONFIG_HOME/diffie/
    vm_images`` (``~/.config/diffie/vm_images``). Never relative to the current directory."""
    checkout = Path(__file__).resolve().parent.parent / "vm_images"
    if checkout.is_dir():
        return checkout
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "diffie" / "vm_images"


class Settings(BaseSettings):
    """Diffie's configuration. Nothing reads the environment at import time: call ``Settings()``."""

    model_config = SettingsConfigDict(env_prefix="DIFFIE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Database, broker, run folders. Default "
                           "$XDG_DATA_HOME/diffie (~/.local/share/diffie).")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir.")
    broker_url: str = Field(default="", description="Celery broker; default embedded SQLite broker.")
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated bearer tokens, each TOKEN (every "
        "scope) or SCOPES:TOKEN with SCOPES read, submit or read+submit; empty = no auth.")
    # Links that go to people (check runs, PR comments, CLI and API output): signed, expiring.
    url_signing_key: str = Field(
        default="", description="HMAC key of signed report/artifact links (at least 32 "
        "characters); empty: a random key kept in <data_dir>/url-signing.key.")
    signed_url_ttl_s: int = Field(
        default=30 * 24 * 3600, ge=60, description="How long a signed link works (seconds).")
    url_mode_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (scheme://host:port, port * = any) the API "
        "may verify in URL mode; empty = URL mode refused through the API.")
    repo_mode_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Where the API may take repo-mode repositories from: "
        "local directories (a repository inside one) and URL prefixes; empty = repo mode "
        "refused through the API (the CLI and GitHub are not affected).")
    github_webhook_secret: str = ""
    github_app_id: str = ""
    github_private_key_path: Path | None = None
    github_api_url: str = "https://api.github.com"
    github_process_drafts: bool = False
    github_require_approval: Literal["forks", "first-time", "all", "none"] = Field(
        default="forks", description="Which pull requests wait for a maintainer's \"Authorize "
        "run\" before their code runs: forks; first-time (forks and authors GitHub calls "
        "FIRST_TIME_CONTRIBUTOR, FIRST_TIMER or NONE); all; none.")
    github_require_approval_by: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Per-owner or per-repository overrides of "
        "DIFFIE_GITHUB_REQUIRE_APPROVAL: comma-separated OWNER=POLICY or OWNER/REPO=POLICY "
        "(the repository's entry wins over its owner's).")
    github_sweep_interval_s: float = Field(
        default=300.0, description="How often a long-lived process publishes GitHub results an "
        "earlier attempt could not (GitHub was down); 0 = only at start-up.")
    artifact_store: str = Field(
        default="", description="Where finished runs' files are kept for the API: empty = the "
        "local data dir (API and workers share a disk); s3://BUCKET[/PREFIX] = an "
        "S3-compatible store (API and worker hosts apart).")
    s3_endpoint_url: str = Field(
        default="", description="The S3 API endpoint of a store that is not AWS (MinIO, Ceph, "
        "Garage), e.g. http://minio:9000.")
    s3_region: str = Field(default="us-east-1", description="The S3 region.")
    callback_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (scheme://host:port, port * = any) a run's "
        "callback_url may point at; empty = callbacks refused.")
    callback_secret: str = Field(
        default="", description="HMAC-SHA256 key that signs every callback "
        "(X-Diffie-Signature); at least 32 characters; callbacks need it.")
    public_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of reports.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines on stderr: text, or json (one object a line: ts, "
        "level, logger, message, run_id, host, pid) for a log pipeline.")
    max_body_bytes: int = 1_000_000
    max_upload_bytes: int = Field(
        default=750_000, ge=0, description="Largest patch or git bundle a repo-mode request may "
        "carry as its head (bytes, decoded); the request body limit applies too.")
    chromium_path: str = "/usr/bin/chromium"
    browser_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins (scheme://host[:port]) every "
        "run's browser may reach besides the app under test; empty = only the app.")
    # VM sandbox
    vm_images_dir: Path = Field(
        default_factory=default_vm_images_dir,
        description="The operator's image recipes (<dir>/<name>/recipe.yml). Default: vm_images/ "
        "of the Diffie checkout, else $XDG_CONFIG_HOME/diffie/vm_images.")
    image_cache_dir: Path = Field(
        default_factory=default_image_cache_dir,
        description="Built golden images (content-addressed, kept across checkouts) and the "
        "per-lease overlays; QEMU's unprivileged user must be able to traverse it. Default "
        "/var/lib/diffie/images as root, else ~/.cache/diffie/images.")
    image_keep_s: float = Field(
        default=7 * 86400, ge=0, description="A built image no run leased for this long is "
        "deleted when another image is built (while referenced, it stays).")
    max_repo_vm_memory_mib: int = Field(
        default=4096, ge=256, description="Largest guest memory a repository's own recipe may "
        "ask for (operator images are not capped).")
    max_repo_vm_vcpus: int = Field(default=4, ge=1, description="Most vCPUs a repository's "
                                   "recipe may ask for.")
    max_repo_vm_disk_mib: int = Field(default=16384, ge=512, description="Largest disk a "
                                      "repository's recipe may ask for.")
    package_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["pypi", "npm"], description="Package registries a guest may "
        "install from at deploy time, through the host's caching proxy (comma-separated: "
        "pypi, npm; empty = none).")
    package_index_ttl_s: float = Field(
        default=300, ge=0, description="How long the package proxy serves a cached index page "
        "(files are cached for good).")
    vm_domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    libvirt_uri: str = "qemu:///system"
    vm_slots: int = 2
    vm_port_base: int = 47100
    # Verification
    noise_floor: bool = True
    parallel_sides: bool = Field(
        default=True, description="Base and head at once: two browsers (URL mode); two VMs, "
        "each with its browser, when a second VM slot is free (repo mode).")
    task_time_limit_s: int = Field(
        default=1800, gt=0, description="A run still going after this long ends error (every "
        "worker, the embedded one included).")
    # Limits on what a change may ask for (its .diffie.yml is untrusted): see diffie/spec_limits.py
    max_spec_bytes: int = Field(default=lim.MAX_SPEC_BYTES, gt=0)
    max_flows: int = Field(default=lim.MAX_FLOWS, gt=0)
    max_steps_per_flow: int = Field(default=lim.MAX_STEPS_PER_FLOW, gt=0)
    max_viewports: int = Field(default=lim.MAX_VIEWPORTS, gt=0)
    max_screenshots: int = Field(default=lim.MAX_SCREENSHOTS, gt=0)
    max_step_timeout_ms: int = Field(default=lim.MAX_STEP_TIMEOUT_MS, gt=0)
    max_browse_time_s: int = Field(
        default=lim.MAX_BROWSE_TIME_S, gt=0, description="Cap on the sum of a spec's step "
        "timeouts × viewports (the worst case of browsing one side).")
    max_deploy_commands: int = Field(default=lim.MAX_DEPLOY_COMMANDS, gt=0)
    max_deploy_timeout_s: float = Field(default=lim.MAX_DEPLOY_TIMEOUT_S, gt=0)
    max_ready_timeout_s: float = Field(default=lim.MAX_READY_TIMEOUT_S, gt=0)
    max_screenshot_pixels: int = Field(
        default=lim.MAX_SCREENSHOT_PIXELS, gt=0, description="Area cap of one screenshot; a "
        "taller full-page shot is clipped to it (and says so).")
    max_repo_files: int = Field(default=lim.MAX_REPO_FILES, gt=0,
                                description="Files of a revision copied into the guest.")
    max_repo_bytes: int = Field(default=lim.MAX_REPO_BYTES, gt=0,
                                description="Bytes of a revision copied into the guest.")
    # Queue and worker liveness
    queue_name: str = Field(default="diffie", description="Celery queue the runs go to.")
    heartbeat_s: float = Field(default=10.0, gt=0, description="Run/worker heartbeat period.")
    stale_after_s: float = Field(
        default=90.0, gt=0, description="A running run whose heartbeat is older is retried.")
    max_attempts: int = Field(default=3, ge=1, description="Tries of a run before it ends error.")
    queued_stale_after_s: float = Field(
        default=900.0, gt=0, description="A run queued (or re-queued) longer than this without a "
        "worker taking it (its broker message was lost, its claim failed) is enqueued again.")

    @field_validator("api_tokens", "browser_allowed_origins", "repo_mode_sources",
                     "package_registries", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("package_registries")
    @classmethod
    def _registries(cls, value: list[str]) -> list[str]:
        from diffie.sandbox.package_proxy import parse_registries

        return parse_registries(",".join(value))

    @field_validator("github_require_approval_by", mode="before")
    @classmethod
    def _approval_overrides(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_overrides(value)
        if isinstance(value, dict):
            return parse_overrides(",".join(f"{k}={v}" for k, v in value.items()))
        return value

    @field_validator("url_mode_origins", "callback_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [t for t in value.split(",") if t.strip()]
        if isinstance(value, list | tuple):
            return parse_allowed(str(v) for v in value)
        return value

    @field_validator("url_signing_key", "callback_secret")
    @classmethod
    def _key_length(cls, value: str, info: ValidationInfo) -> str:
        if value and len(value) < 32:
            empty = ", or empty for a generated key" if info.field_name == "url_signing_key" \
                else ""
            raise ValueError(f"DIFFIE_{str(info.field_name).upper()} must be at least 32 "
                             f"characters (for example `openssl rand -hex 32`){empty}")
        return value

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'diffie.db').resolve()}"

    @property
    def publish_queue(self) -> str:
        """The queue of publish jobs (GitHub check runs and comments): ``<queue_name>.publish``,
        apart from the runs so that a long verification never delays a check run."""
        return f"{self.queue_name}.publish"

    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.artifacts_dir, self.images_dir):
            path.mkdir(parents=True, exist_ok=True)
