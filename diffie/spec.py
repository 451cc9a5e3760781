"""The project's ``.diffie.yml``: flows, steps, viewports, masks, sandbox/deploy.

Validation errors name the file, the line and the field::

    .diffie.yml:14 (flows[1].steps[2].click): a click step needs a selector

Steps are written as one-key mappings, with a short form for the common argument::

    - goto: /products
    - click: "#add-to-cart"
    - fill: {selector: "#email", value: "ada@example.com"}
    - press: {selector: "#q", key: Enter}       # or: press: Enter
    - select: {selector: "#size", value: "M"}
    - check: "#terms"
    - hover: ".menu"
    - wait_for: {selector: ".loaded", state: visible}
    - expect_text: {selector: h1, text: "Cart"}
    - expect_visible: ".cart-total"
    - expect_url: "/cart"                         # substring of the page URL
    - screenshot: {name: cart, full_page: true, mask: [".ad"]}   # or: screenshot: cart

An app of several services (``sandbox.services``: a front end, an API, ...) is addressed by
their names: a flow's ``service: api`` (default: the first service) and a step's
``goto: {url: /orders, service: api}`` (:mod:`diffie.services`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from diffie import yamlsafe
from diffie.errors import SpecError
from diffie.origins import OriginError, parse_third_party_origin
from diffie.services import DEFAULT_SERVICE, MAX_SERVICES, SERVICE_NAME, Service
from diffie.spec_limits import SpecLimits, first_excess, node_excess

ACTIONS: tuple[str, ...] = (
    "goto", "click", "fill", "press", "select", "check", "hover", "wait_for",
    "expect_text", "expect_visible", "expect_url", "screenshot",
)
Action = Literal[
    "goto", "click", "fill", "press", "select", "check", "hover", "wait_for",
    "expect_text", "expect_visible", "expect_url", "screenshot",
]
# The argument a short form (``click: "#x"``) fills in.
_SHORT_FIELD: dict[str, str] = {
    "goto": "url", "click": "selector", "check": "selector", "hover": "selector",
    "wait_for": "selector", "expect_visible": "selector", "expect_url": "url",
    "screenshot": "name", "press": "key",
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "goto": ("url",), "click": ("selector",), "fill": ("selector", "value"),
    "press": ("key",), "select": ("selector", "value"), "check": ("selector",),
    "hover": ("selector",), "wait_for": ("selector",), "expect_text": ("selector", "text"),
    "expect_visible": ("selector",), "expect_url": ("url",), "screenshot": ("name",),
}


# A path (and query/fragment) of the app's own origin: one leading "/", never "//" or "/\\"
# (a browser reads both as another host), no backslash, whitespace or control characters.
_APP_PATH = re.compile(r"^/(?![/\\])[^\\\s\x00-\x1f\x7f]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _AtField(ValueError):
    """A model validator's problem with one of its fields (or, for the spec, with a flow or
    step): ``path`` extends pydantic's location, so the error names that field and its line."""

    def __init__(self, message: str, path: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.path = path


# steps that go to (or look at) one service of the app
_SERVICE_ACTIONS = ("goto", "expect_url")


class Step(_Strict):
    action: Action
    selector: str | None = None
    url: str | None = None
    value: str | None = None
    key: str | None = None
    text: str | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,60}$")
    full_page: bool = False
    mask: list[str] = Field(default_factory=list)
    state: Literal["visible", "hidden", "attached", "detached"] = "visible"
    timeout_ms: int | None = Field(default=None, gt=0, le=600_000)
    # the service a goto (or expect_url) step goes to; default: its flow's
    service: str | None = Field(default=None, pattern=SERVICE_NAME)
    line: int | None = None

    @model_validator(mode="after")
    def _check_required(self) -> Step:
        for field in _REQUIRED[self.action]:
            if getattr(self, field) in (None, ""):
                raise ValueError(f"a {self.action} step needs a {field}")
        if self.service is not None and self.action not in _SERVICE_ACTIONS:
            raise _AtField(f"a {self.action} step takes no service (only goto and expect_url "
                           "do; a flow's service: says where its other steps go)", ("service",))
        if self.action == "goto" and self.url is not None and not _APP_PATH.match(self.url):
            raise ValueError(
                f"goto {self.url[:200]!r}: a goto step takes a path of the app, starting with a "
                "single '/' (e.g. /products/2); other origins, file:, data: and other schemes "
                "are not allowed (third-party origins the app loads go in allowed_origins)")
        return self

    def describe(self) -> str:
        """A short human description (``click #add``)."""
        arg = self.selector or self.url or self.name or self.key or ""
        extra = f" = {self.value!r}" if self.value is not None else ""
        extra += f" contains {self.text!r}" if self.text is not None else ""
        extra += f" on {self.service}" if self.service is not None else ""
        return f"{self.action} {arg}{extra}".strip()


class Viewport(_Strict):
    width: int = Field(gt=0, le=7680)
    height: int = Field(gt=0, le=4320)
    mobile: bool = False
    device_scale_factor: float = Field(default=1.0, gt=0, le=4)


DEFAULT_VIEWPORTS: dict[str, Viewport] = {
    "desktop": Viewport(width=1280, height=800),
    "mobile": Viewport(width=390, height=844, mobile=True),
}


class Cookie(_Strict):
    name: str
    value: str
    path: str = "/"


class Flow(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,60}$")
    steps: list[Step] = Field(min_length=1)
    viewports: list[str] | None = None
    signed_in: bool = False
    # Repo mode reverts the VM to its state right after the deploy before each flow × viewport;
    # ``reset: false`` skips that revert for a read-only flow: it then sees whatever the flows
    # before it left on the server (saves ~1 s per flow × viewport under emulation).
    reset: bool = True
    # where its goto paths, expect_url and session cookies go (default: the first service)
    service: str | None = Field(default=None, pattern=SERVICE_NAME)
    line: int | None = None


def _ready_path(value: str) -> str:
    problem = ready_path_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# a path on the app that answers when it is ready (a service's, or the one app's)
ReadyPath = Annotated[str, Field(max_length=2000), AfterValidator(_ready_path)]


class ServiceSpec(_Strict):
    """One service of the app in the guest (``sandbox.services``)."""

    name: str = Field(pattern=SERVICE_NAME)
    port: int = Field(gt=0, lt=65536)
    ready_path: ReadyPath = "/health"
    ready_timeout_s: float | None = Field(default=None, gt=0, le=900)   # default: the sandbox's


class SandboxSpec(_Strict):
    # the operator's named image (vm_images/<name>) ...
    image: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    # ... or the repository's own recipe, a path in the tree (built on demand, per revision)
    recipe: str | None = Field(default=None, max_length=300)
    source_dir: str = "/srv/app"
    # paths under source_dir whose content in the guest (the image's, e.g. a SQLite database
    # the seed made in instance/) survives the deploy; the revision's copy there is dropped
    keep: list[str] = Field(default_factory=list, max_length=20)
    # who owns the deployed tree (user or user:group in the guest); default root
    owner: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$")
    # in order, in source_dir: build (install dependencies, compile assets), migrate (schema
    # changes: their output is kept per side), deploy (restart the services)
    build: list[str] = Field(default_factory=list)
    migrate: list[str] = Field(default_factory=list)
    deploy: list[str] = Field(default_factory=list)
    # the app's services, each on its guest port (the first is the default one); without
    # them, port and ready_path are the one service named "app"
    services: list[ServiceSpec] | None = Field(default=None, min_length=1,
                                               max_length=MAX_SERVICES)
    port: int = Field(default=8000, gt=0, lt=65536)
    ready_path: ReadyPath = "/health"
    ready_timeout_s: float = Field(default=60, gt=0, le=900)
    deploy_timeout_s: float = Field(default=300, gt=0, le=3600)

    @model_validator(mode="after")
    def _services_or_port(self) -> SandboxSpec:
        if self.services is None:
            return self
        for field in ("port", "ready_path"):
            if field in self.model_fields_set:
                raise _AtField(f"give either services or {field} (the shorthand of one service "
                               f"named {DEFAULT_SERVICE!r}), not both: move {field} into the "
                               "services entry it belongs to", (field,))
        names: set[str] = set()
        ports: dict[int, str] = {}
        for i, service in enumerate(self.services):
            if service.name in names:
                raise _AtField(f"two services are named {service.name!r}",
                               ("services", i, "name"))
            if service.port in ports:
                raise _AtField(f"services {ports[service.port]!r} and {service.name!r} have one "
                               f"port, {service.port}", ("services", i, "port"))
            names.add(service.name)
            ports[service.port] = service.name
        return self

    @property
    def effective_services(self) -> list[Service]:
        """The app's services, defaults resolved, the default one first: ``services``, or the
        one service of ``port`` and ``ready_path`` named ``app``. What every consumer uses."""
        if self.services is None:
            return [Service(DEFAULT_SERVICE, self.port, self.ready_path, self.ready_timeout_s)]
        return [Service(s.name, s.port, s.ready_path,
                        self.ready_timeout_s if s.ready_timeout_s is None else s.ready_timeout_s)
                for s in self.services]

    @field_validator("keep")
    @classmethod
    def _kept_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            parts = path.strip("/").split("/")
            if (path.startswith("/") or not path.strip("/") or ".." in parts
                    or any(ord(c) < 0x20 for c in path) or "\\" in path):
                raise ValueError(f"keep takes paths relative to source_dir, such as instance "
                                 f"(got {path[:80]!r})")
        return value

    @property
    def commands(self) -> list[tuple[str, str]]:
        """(stage, command) of every command a deploy runs, in order."""
        return ([("build", c) for c in self.build] + [("migrate", c) for c in self.migrate]
                + [("deploy", c) for c in self.deploy])

    @field_validator("recipe")
    @classmethod
    def _recipe_in_tree(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split("/")
        if value.startswith("/") or ".." in parts or "\\" in value or not value.strip():
            raise ValueError(f"recipe must be a relative path inside the repository, such as "
                             f".diffie/image.yml (got {value[:80]!r})")
        if any(ord(c) < 0x20 for c in value):
            raise ValueError("recipe must not contain control characters")
        return value

    @model_validator(mode="after")
    def _one_image(self) -> SandboxSpec:
        if (self.image is None) == (self.recipe is None):
            raise ValueError("name either 'image' (an operator's image in vm_images/) or "
                             "'recipe' (a recipe in this repository, e.g. .diffie/image.yml), "
                             "not both and not neither")
        return self

    @property
    def image_label(self) -> str:
        """What the run's metadata and messages call the image."""
        return self.image or f"recipe {self.recipe}"


def ready_path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain absolute path on the app (None when it is). The worker
    fetches it on the forwarded app port, so it must not be able to name another host:
    no scheme, no ``//`` authority, no ``@`` userinfo, no backslash, no control characters."""
    if not path.startswith("/"):
        return f"ready_path must be a path starting with '/' (got {path[:80]!r})"
    if path.startswith("//"):
        return "ready_path must not start with '//' (that names a host, not a path)"
    if "@" in path or "\\" in path:
        return "ready_path must not contain '@' or a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in path):
        return "ready_path must not contain spaces or control characters"
    if "://" in path:
        return "ready_path must be a path, not a URL"
    return None


class Spec(_Strict):
    version: Literal[1] = 1
    viewports: dict[str, Viewport] = Field(default_factory=lambda: dict(DEFAULT_VIEWPORTS))
    timeout_ms: int = Field(default=10_000, gt=0, le=600_000)
    masks: list[str] = Field(default_factory=list)
    session_cookies: list[Cookie] = Field(default_factory=list)
    noise_floor: bool = True
    # a flow × viewport that stops at the same step on both sides fails the run (default: the
    # run can still pass, and its summary says how much was verified)
    fail_on_not_verified: bool = False
    # pixelmatch's per-pixel colour tolerance: 0 counts every pixel that differs (Diffie renders
    # both sides identically); 0.1 is pixelmatch's tolerance for different renderers
    visual_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    flows: list[Flow] = Field(min_length=1)
    # third-party origins the app needs (fonts, CDNs): public DNS names only
    allowed_origins: list[str] = Field(default_factory=list, max_length=20)
    sandbox: SandboxSpec | None = None

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                parse_third_party_origin(text)
            except OriginError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _check_refs(self, info: ValidationInfo) -> Spec:
        names = [f.name for f in self.flows]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate flow names: {', '.join(dupes)}")
        for flow in self.flows:
            for vp in flow.viewports or []:
                if vp not in self.viewports:
                    raise ValueError(
                        f"flow {flow.name!r} uses viewport {vp!r}; defined: {', '.join(self.viewports)}")
            shots = [s.name for s in flow.steps if s.action == "screenshot"]
            if len(shots) != len(set(shots)):
                raise ValueError(f"flow {flow.name!r} has two screenshots with one name")
            if flow.signed_in and not self.session_cookies:
                raise ValueError(f"flow {flow.name!r} is signed_in but session_cookies is empty")
        self._check_services(url_mode=bool((info.context or {}).get("url_mode")))
        return self

    def _check_services(self, *, url_mode: bool) -> None:
        """Every service a flow or step names is one of the sandbox's; in URL mode (one URL
        per side) only the default one."""
        known = self.service_names(url_mode=url_mode)
        if self.sandbox is None:
            why = (f"without a sandbox section (URL mode) the app is one service, "
                   f"{DEFAULT_SERVICE!r}")
        elif url_mode:
            why = f"URL mode browses one URL per side, the default service {known[0]!r}"
        else:
            why = f"the sandbox's services are {', '.join(known)}"
        for fi, flow in enumerate(self.flows):
            if flow.service is not None and flow.service not in known:
                raise _AtField(f"flow {flow.name!r} names service {flow.service!r}; {why}",
                               ("flows", fi, "service"))
            for si, step in enumerate(flow.steps):
                if step.service is not None and step.service not in known:
                    raise _AtField(f"{step.action} step names service {step.service!r}; {why}",
                                   ("flows", fi, "steps", si, "service"))

    @property
    def default_service(self) -> str:
        """The service of a flow that names none: the sandbox's first (``app`` without one)."""
        return self.sandbox.effective_services[0].name if self.sandbox else DEFAULT_SERVICE

    def service_names(self, *, url_mode: bool = False) -> list[str]:
        """The services flows may name (URL mode: only the default one)."""
        if self.sandbox is None or url_mode:
            return [self.default_service]
        return [s.name for s in self.sandbox.effective_services]

    def flow_viewports(self, flow: Flow) -> list[tuple[str, Viewport]]:
        names = flow.viewports or list(self.viewports)
        return [(n, self.viewports[n]) for n in names]


# --- parsing with line numbers ---------------------------------------------------------------

def _normalise_step(raw: Any, line: int | None) -> Any:
    """Turn ``{click: "#x", timeout_ms: 5}`` into ``{action: click, selector: "#x", ...}``."""
    if not isinstance(raw, dict):
        return raw
    actions = [k for k in raw if k in ACTIONS]
    if len(actions) != 1:
        if not actions:
            raise _StepShapeError(
                f"a step needs exactly one action key ({', '.join(ACTIONS)}); got {sorted(raw)}")
        raise _StepShapeError(f"a step has several action keys: {actions}")
    action = actions[0]
    arg = raw[action]
    out: dict[str, Any] = {k: v for k, v in raw.items() if k != action}
    out["action"] = action
    if isinstance(arg, dict):
        for k, v in arg.items():
            out[k] = v
    elif arg is not None:
        if action not in _SHORT_FIELD:
            raise _StepShapeError(f"{action} takes a mapping (e.g. {{selector: ..., value: ...}})")
        out[_SHORT_FIELD[action]] = arg if isinstance(arg, str) else str(arg)
    out["line"] = line
    return out


class _StepShapeError(ValueError):
    pass


def _at_field(exc: ValidationError) -> tuple[Any, ...]:
    """Where under its model's location the first error is (a model validator's
    :class:`_AtField`), e.g. ``("port",)`` under ``("sandbox",)``; ``()`` when not known."""
    error = exc.errors()[0].get("ctx", {}).get("error")
    return error.path if isinstance(error, _AtField) else ()


def _doc_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Map a pydantic error location onto the YAML document's path (undo step normalisation)."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        else:
            # a normalised step field: point at the action's line
            break
    return tuple(path)


def parse_spec(text: str, *, file: str = ".diffie.yml", limits: SpecLimits | None = None,
               url_mode: bool = False) -> Spec:
    """Parse and validate a spec; raises :class:`SpecError` naming the file, line and field.

    ``limits`` caps its size (flows, steps, timeouts, ...; default: the settings' defaults);
    ``url_mode``: for two running deployments (one URL per side), where flows may name no
    service but the default one."""
    limits = limits or SpecLimits()
    size = len(text.encode("utf-8", errors="replace"))
    if size > limits.max_spec_bytes:
        raise _too_big(size, limits, file)
    try:
        node = yamlsafe.compose(text, max_bytes=limits.max_spec_bytes + 1)
        if node is not None:
            excess = node_excess(node, limits)
            if excess is not None:
                raise SpecError(excess.message, file=file,
                                line=yamlsafe.line_for(yamlsafe.line_map(node), excess.path),
                                field=excess.field)
        data = yamlsafe.construct(node) if node is not None else None
    except yaml.YAMLError as exc:
        message, line = yamlsafe.yaml_problem(exc)
        raise SpecError(message, file=file, line=line) from exc
    if node is None or data is None:
        raise SpecError("the spec is empty; it needs at least a 'flows' list", file=file, line=1)
    if not isinstance(data, dict):
        raise SpecError("the spec must be a mapping with a 'flows' list", file=file, line=1)
    lines = yamlsafe.line_map(node)

    def line_for(path: tuple[Any, ...]) -> int | None:
        return yamlsafe.line_for(lines, path)

    normalised = dict(data)
    flows = data.get("flows")
    if isinstance(flows, list):
        new_flows: list[Any] = []
        for fi, flow in enumerate(flows):
            if isinstance(flow, dict):
                flow = dict(flow)
                flow["line"] = line_for(("flows", fi))
                steps = flow.get("steps")
                if isinstance(steps, list):
                    new_steps = []
                    for si, step in enumerate(steps):
                        step_line = line_for(("flows", fi, "steps", si))
                        try:
                            new_steps.append(_normalise_step(step, step_line))
                        except _StepShapeError as exc:
                            raise SpecError(str(exc), file=file, line=step_line,
                                            field=f"flows[{fi}].steps[{si}]") from exc
                    flow["steps"] = new_steps
            new_flows.append(flow)
        normalised["flows"] = new_flows
    try:
        spec = Spec.model_validate(normalised, context={"url_mode": url_mode})
    except ValidationError as exc:
        loc, msg = yamlsafe.validation_problem(exc)
        loc = (*loc, *_at_field(exc))
        raise SpecError(msg, file=file, line=line_for(_doc_path(loc, data)),
                        field=yamlsafe.field_name(loc) or None) from exc
    excess = first_excess(spec, limits)
    if excess is not None:
        raise SpecError(excess.message, file=file, line=line_for(excess.path),
                        field=excess.field)
    return spec


def _too_big(size: int, limits: SpecLimits, file: str) -> SpecError:
    return SpecError(f"the spec is {size:,} bytes, more than the limit of "
                     f"{limits.max_spec_bytes:,} (DIFFIE_MAX_SPEC_BYTES)", file=file, line=1)


def load_spec(path: Path, *, limits: SpecLimits | None = None) -> Spec:
    limits = limits or SpecLimits()
    try:
        with path.open("rb") as fh:
            raw = fh.read(limits.max_spec_bytes + 1)
            if len(raw) > limits.max_spec_bytes:
                raise _too_big(os.fstat(fh.fileno()).st_size, limits, str(path))
        text = raw.decode("utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason} at byte {exc.start})",
                        file=str(path)) from exc
    return parse_spec(text, file=str(path), limits=limits)
