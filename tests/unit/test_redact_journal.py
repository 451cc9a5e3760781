"""Secrets masked in the guest's text; which units are the app's; the journal's bounds."""

from __future__ import annotations

from diffie.redact import mask_secrets, secret_values
from diffie.sandbox.journal import bound_text, service_units, units_in
from diffie.spec import parse_spec


def test_secrets_are_masked_and_their_names_kept() -> None:
    text = ("connect postgres://shop:s3cr3t-pw@db:5432/shop failed\n"
            "env SHOP_DB_PASSWORD=hunter22 STRIPE_API_KEY='sk_live_abc' PORT=8000\n"
            'payload {"password": "letmein!", "user": "ada"} token=abcd1234\n'
            "GET /x Authorization: Bearer eyJhbGciOi.payload.sig\n"
            "KeyError: 'sku'\n")
    masked = mask_secrets(text)
    for secret in ("s3cr3t-pw", "hunter22", "sk_live_abc", "letmein!", "abcd1234",
                   "eyJhbGciOi"):
        assert secret not in masked
    assert "postgres://shop:***@db:5432/shop" in masked
    assert "SHOP_DB_PASSWORD=*** STRIPE_API_KEY=*** PORT=8000" in masked
    assert '"user": "ada"' in masked and "Bearer ***" in masked
    assert "KeyError: 'sku'" in masked                  # an error message is not a secret


def test_known_values_are_masked_wherever_they_appear() -> None:
    known = secret_values('SHOP_PORT=8000 SHOP_DB_PASSWORD=correct-horse "API_TOKEN=two words"')
    assert known == ["correct-horse", "two words"]
    masked = mask_secrets("login failed for correct-horse (two words)", known)
    assert masked == "login failed for *** (***)"


def test_the_units_of_a_deploy() -> None:
    assert units_in("systemctl restart shop") == ["shop.service"]
    assert units_in("systemctl daemon-reload && systemctl --no-block restart web worker.service") \
        == ["web.service", "worker.service"]
    assert units_in("systemctl restart -- --help; systemctl start $(evil)") == []
    assert units_in("python3 -m compileall -q /srv/shop/app") == []
    assert service_units(["systemctl restart shop", "systemctl start nginx.socket"],
                         ["shop.service", "postgresql.service"]) == ["shop.service",
                                                                     "postgresql.service"]


def test_the_journal_is_bounded_to_its_newest_lines() -> None:
    text = "".join(f"line {i}\n" for i in range(500))
    kept = bound_text(text, lines=200, chars=16_000)
    rows = kept.splitlines()
    assert rows[0] == "[diffie: 300 earlier line(s) not shown]" and rows[-1] == "line 499"
    assert len(rows) == 201
    small = bound_text(text, lines=200, chars=100)
    assert len(small) <= 100 + len("[diffie: 489 earlier line(s) not shown]\n")
    assert small.endswith("line 499") and bound_text("a\nb\n") == "a\nb"


def test_a_flow_resets_unless_it_opts_out() -> None:
    spec = parse_spec("flows:\n  - {name: a, steps: [{goto: /}]}\n"
                      "  - {name: b, reset: false, steps: [{goto: /}]}\n")
    assert [f.reset for f in spec.flows] == [True, False]
