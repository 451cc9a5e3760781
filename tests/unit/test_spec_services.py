"""``sandbox.services``: several services per app, addressed by name from flows and goto
steps; every mistake names the file, the line and the field."""

from __future__ import annotations

import pytest

from diffie.cli_tools import describe_spec
from diffie.errors import SpecError
from diffie.services import Service, ServiceUrls, env_name
from diffie.spec import Spec, parse_spec
from diffie.spec_limits import SpecLimits
from diffie.spec_trust import merge_untrusted

SANDBOX = """\
sandbox:
  image: tasks
  ready_timeout_s: 40
  services:
    - {name: web, port: 3000, ready_path: /}
    - name: api
      port: 8000
      ready_timeout_s: 5
"""
FLOWS = """\
flows:
  - name: home
    steps:
      - goto: /
  - name: orders
    service: api
    signed_in: false
    steps:
      - goto: /orders
      - goto: {url: /, service: web}
      - expect_url: {url: /, service: web}
"""


def error_of(text: str, *, url_mode: bool = False) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, url_mode=url_mode)
    return info.value


def test_services_parse_with_their_defaults() -> None:
    spec = parse_spec(FLOWS + SANDBOX)
    assert spec.sandbox is not None
    assert spec.sandbox.effective_services == [Service("web", 3000, "/", 40),
                                               Service("api", 8000, "/health", 5)]
    assert spec.default_service == "web" and spec.service_names() == ["web", "api"]
    home, orders = spec.flows
    assert home.service is None and orders.service == "api"
    assert [s.service for s in orders.steps] == [None, "web", "web"]
    assert orders.steps[1].describe() == "goto / on web"
    assert orders.steps[1].line == 10


def test_port_and_ready_path_are_the_one_service_app() -> None:
    spec = parse_spec(FLOWS.replace("service: api", "service: app").replace("service: web",
                                                                           "service: app")
                      + "sandbox:\n  image: shop\n  port: 8001\n  ready_path: /up\n")
    assert spec.sandbox is not None
    assert spec.sandbox.effective_services == [Service("app", 8001, "/up", 60)]
    assert spec.default_service == "app"


@pytest.mark.parametrize("field", ["port", "ready_path"])
def test_services_do_not_go_with_the_shorthand(field: str) -> None:
    value = "8000" if field == "port" else "/health"      # even the default, written out
    text = FLOWS + SANDBOX.replace("  services:\n", f"  {field}: {value}\n  services:\n")
    err = error_of(text)
    assert (err.line, err.field) == (15, f"sandbox.{field}"), str(err)
    assert err.reason.startswith(f"give either services or {field} (the shorthand of one "
                                 "service named 'app'), not both")


@pytest.mark.parametrize(("entry", "field", "message"), [
    ("{name: web, port: 3001}", "name", "two services are named 'web'"),
    ("{name: worker, port: 3000}", "port", "services 'web' and 'worker' have one port, 3000"),
    ("{name: Web2, port: 3002}", "name", "should match pattern"),
    ("{name: a_b, port: 3002}", "name", "should match pattern"),
    ("{name: db, port: 3002, ready_path: '//evil/'}", "ready_path", "must not start with '//'"),
    ("{name: db, port: 70000}", "port", "less than 65536"),
    ("{name: db, port: 3002, host: x}", "host", "unknown field 'host'"),
    ("{name: db, port: 3002, ready_timeout_s: 0}", "ready_timeout_s", "greater than 0"),
])
def test_service_mistakes_name_the_field_and_line(entry: str, field: str, message: str) -> None:
    err = error_of(FLOWS + SANDBOX + f"    - {entry}\n")
    assert (err.line, err.field) == (20, f"sandbox.services[2].{field}"), str(err)
    assert message in err.reason
    assert str(err).startswith(f".diffie.yml:20 (sandbox.services[2].{field}): ")


def test_at_most_eight_services() -> None:
    services = "".join(f"    - {{name: s{i}, port: {3000 + i}}}\n" for i in range(9))
    err = error_of("flows: [{name: a, steps: [{goto: /}]}]\nsandbox:\n  image: x\n"
                   f"  services:\n{services}")
    assert (err.line, err.field) == (4, "sandbox.services") and "at most 8" in err.reason
    err = error_of("flows: [{name: a, steps: [{goto: /}]}]\nsandbox:\n  image: x\n"
                   "  services: []\n")
    assert err.field == "sandbox.services"


def test_an_unknown_service_is_an_error_at_its_line() -> None:
    err = error_of(FLOWS.replace("service: api", "service: admin") + SANDBOX)
    assert (err.line, err.field) == (6, "flows[1].service")
    assert err.reason == "flow 'orders' names service 'admin'; the sandbox's services are web, api"
    err = error_of(FLOWS.replace("{url: /, service: web}", "{url: /, service: cms}", 1) + SANDBOX)
    assert (err.line, err.field) == (10, "flows[1].steps[1].service")
    assert "goto step names service 'cms'" in err.reason


def test_only_goto_and_expect_url_take_a_service() -> None:
    err = error_of(FLOWS.replace("      - goto: /orders\n",
                                 "      - click: {selector: '#x', service: web}\n") + SANDBOX)
    assert (err.line, err.field) == (9, "flows[1].steps[0].service")
    assert "a click step takes no service" in err.reason


def test_url_mode_has_only_the_default_service() -> None:
    # no sandbox: the one service is "app"
    err = error_of(FLOWS)
    assert (err.line, err.field) == (6, "flows[1].service")
    assert "without a sandbox section (URL mode) the app is one service, 'app'" in err.reason
    assert parse_spec(FLOWS.replace("service: api", "service: app")
                      .replace("service: web", "service: app")).default_service == "app"
    # a spec with services, used in URL mode (one URL per side): only the first
    err = error_of(FLOWS + SANDBOX, url_mode=True)
    assert (err.line, err.field) == (6, "flows[1].service")
    assert "URL mode browses one URL per side, the default service 'web'" in err.reason
    only_web = FLOWS.replace("    service: api\n", "")
    assert parse_spec(only_web + SANDBOX, url_mode=True).flows[1].service is None


def test_a_services_ready_timeout_is_capped_like_the_sandboxs() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(FLOWS + SANDBOX.replace("ready_timeout_s: 5", "ready_timeout_s: 500"),
                   limits=SpecLimits(max_ready_timeout_s=300))
    assert (info.value.line, info.value.field) == (19, "sandbox.services[1].ready_timeout_s")
    assert "DIFFIE_MAX_READY_TIMEOUT_S" in info.value.reason


def test_an_untrusted_head_keeps_the_bases_services() -> None:
    base = parse_spec(FLOWS + SANDBOX)
    head = parse_spec(FLOWS.replace("goto: /orders", "goto: /orders?page=2")
                      + SANDBOX.replace("port: 8000", "port: 9999"))
    merged = merge_untrusted(base, head)
    assert merged.sandbox is not None and base.sandbox is not None
    assert merged.sandbox.effective_services == base.sandbox.effective_services
    assert merged.flows[1].steps[0].url == "/orders?page=2"
    # a head whose flows name a service the base's sandbox does not have
    shorthand = parse_spec(FLOWS.replace("service: api", "service: app")
                           .replace("service: web", "service: app")
                           + "sandbox:\n  image: shop\n  port: 8000\n")
    with pytest.raises(SpecError, match="names service 'api'; the sandbox's services are app"):
        merge_untrusted(shorthand, head)
    # and the other way round: a shorthand base merges (its port is not "set" next to services)
    assert isinstance(merge_untrusted(shorthand, shorthand), Spec)


def test_service_urls() -> None:
    urls = ServiceUrls({"web": "http://127.0.0.1:47100", "api-v2": "http://127.0.0.1:47101"})
    assert urls.default_name == "web" and urls.base_url == "http://127.0.0.1:47100"
    assert urls.resolve(None) == urls.base_url and urls.resolve("api-v2") == "http://127.0.0.1:47101"
    assert urls.resolve("admin") is None
    assert urls.env() == {"DIFFIE_SERVICE_URL_WEB": "http://127.0.0.1:47100",
                          "DIFFIE_SERVICE_URL_API_V2": "http://127.0.0.1:47101"}
    assert env_name("my-api") == "DIFFIE_SERVICE_URL_MY_API"
    one = ServiceUrls.of("http://127.0.0.1:9")
    assert dict(one) == {"app": "http://127.0.0.1:9"} and ServiceUrls.of(urls) is urls
    assert urls.describe() == "web http://127.0.0.1:47100, api-v2 http://127.0.0.1:47101"
    with pytest.raises(ValueError):
        ServiceUrls({})


def test_spec_check_describes_the_services() -> None:
    assert "sandbox: tasks, services web:3000, api:8000, 0 build/migrate/deploy command(s)" in \
        describe_spec(parse_spec(FLOWS + SANDBOX))
