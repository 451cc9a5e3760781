"""Visual changes explained in DOM terms (diffie.compare.explain) from the element maps of
base and head: the element that changed itself, not the ones it pushed; the same cause seen
in several viewports has one key; the compact view groups by it."""

from __future__ import annotations

from dataclasses import replace

from diffie.compact import groups_of
from diffie.compare.explain import explain
from diffie.compare.visual import Element as El


def page(banner_h: float, width: float = 1280, title: str = "Shop", cards: int = 3) -> list[El]:
    els = [El("body", "all", 0, 0, width, 400 + banner_h),
           El("body > div.banner", "Free shipping", 0, 0, width, banner_h),
           El("body > header", title, 0, banner_h, width, 60),
           El("body > header > h1", title, 20, banner_h + 10, 200, 40)]
    els += [El(f"body > main > article:nth-of-type({i})", f"card {i}", 20,
               banner_h + 80 + 100 * i, 300, 90) for i in range(1, cards + 1)]
    els.append(El("body > main", "cards", 0, banner_h + 70, width, 330))
    return els


def test_a_grown_banner_is_the_cause_and_the_rest_moved_down() -> None:
    why = explain(page(32), page(40))
    assert [(c.kind, c.selector) for c in why.causes] == [("resized", "body > div.banner")]
    assert why.summary() == ("body > div.banner height 32 → 40 px; 6 element(s) below moved "
                             "down 8 px")
    mobile = explain(page(51, width=390), page(59, width=390))
    assert mobile.key == why.key                     # one cause in every viewport
    assert explain(page(32), page(44)).key != why.key


def test_text_added_removed_and_what_the_maps_cannot_show() -> None:
    retitled = explain(page(32), page(32, title="Boutique"))
    assert [c.kind for c in retitled.causes] == ["text"]
    assert retitled.causes[0].selector == "body > header > h1"
    assert "'Shop' → 'Boutique'" in retitled.summary()
    added = explain(page(32, cards=2), page(32, cards=3))
    assert [(c.kind, c.selector) for c in added.causes] == \
        [("added", "body > main > article:nth-of-type(3)")]
    removed = explain(page(32, cards=3), page(32, cards=2))
    assert [c.kind for c in removed.causes] == ["removed"]
    assert not explain(page(32), page(32))           # a recolour: no cause in the maps


def test_an_element_pushed_out_of_the_screenshot_moved_it_was_not_removed() -> None:
    base = page(32) + [El("body > footer", "footer", 0, 790, 1280, 8)]
    head = [replace(e, y=e.y + 8) if e.selector != "body > div.banner" else e for e in page(40)]
    head = [e for e in head if e.selector != "body"] + [El("body", "all", 0, 0, 1280, 440)]
    why = explain(base, head, base_size=(1280, 800), head_size=(1280, 800))
    assert [c.kind for c in why.causes] == ["resized"]       # the footer left the frame
    assert [c.kind for c in explain(base, head).causes] == ["resized", "removed"]


def test_the_compact_view_groups_visual_changes_by_cause() -> None:
    def visual(fid: str, flow: str, key: str, cause: str) -> dict[str, object]:
        return {"id": fid, "kind": "visual_change", "flow": flow, "viewport": "desktop",
                "message": f"screenshot {flow!r} changed: lots of pixels",
                "details": {"cause_key": key, "cause": cause}}

    banner = "body > div.banner height 32 → 40 px; 6 element(s) below moved down 8 px"
    groups = groups_of([visual("f-1", "home", "k1", banner), visual("f-2", "cart", "k1", banner),
                        visual("f-3", "home", "k2", "body > h1 text 'a' → 'b'"),
                        {"id": "f-4", "kind": "visual_change", "flow": "x", "message": "m"}])
    assert [(g.occurrences, g.message) for g in groups] == [
        (2, f"2 screenshot(s) changed: {banner}"),
        (1, "1 screenshot(s) changed: body > h1 text 'a' → 'b'"), (1, "m")]


def styled(els: list[El], selector: str, **style: str) -> list[El]:
    """``els`` with ``style`` set on ``selector`` and, for colour, inherited by its children."""
    base = {"color": "rgb(0, 0, 0)", "background-color": "rgba(0, 0, 0, 0)",
            "font-weight": "400"}
    out = []
    for e in els:
        own = dict(base)
        if e.selector == selector or (e.selector.startswith(selector + " > ")
                                      and "color" in style):
            own.update({k.replace("_", "-"): v for k, v in style.items()
                        if e.selector == selector or k == "color"})
        out.append(replace(e, style=own))
    return out


def test_a_recolour_names_the_element_and_the_colours_not_its_children() -> None:
    why = explain(styled(page(32), "body > header"),
                  styled(page(32), "body > header", color="rgb(204, 51, 51)"))
    assert [(c.kind, c.selector) for c in why.causes] == [("restyled", "body > header")]
    assert why.summary() == "body > header color rgb(0, 0, 0) → rgb(204, 51, 51)"
    bg = explain(styled(page(32), "body > main > article:nth-of-type(2)"),
                 styled(page(32), "body > main > article:nth-of-type(2)",
                        background_color="rgb(250, 250, 250)"))
    assert bg.causes[0].text.endswith("background-color rgba(0, 0, 0, 0) → rgb(250, 250, 250)")
    bold = page(32)
    wider = [replace(e, width=e.width + 6) if e.selector == "body > header > h1" else e
             for e in bold]
    why = explain(styled(bold, "body > header > h1"),
                  styled(wider, "body > header > h1", font_weight="700"))
    assert [c.kind for c in why.causes] == ["restyled"]
    assert why.summary() == "body > header > h1 font-weight 400 → 700 (size 200x40 → 206x40)"
    why = explain(styled(page(32), "body > div.banner", padding="6px 16px"),
                  styled(page(40), "body > div.banner", padding="10px 16px"))
    assert why.summary() == ("body > div.banner padding 6px 16px → 10px 16px (size 1280x32 → "
                             "1280x40); 6 element(s) below moved down 8 px")


def test_an_element_named_by_its_id_also_says_what_it_is() -> None:
    base = [El("#checkout", "Pay", 10, 10, 80, 30, style={"background-color": "rgb(1, 2, 3)"},
               tag="button.button.primary")]
    head = [replace(base[0], style={"background-color": "rgb(4, 5, 6)"})]
    why = explain(base, head)
    assert why.summary() == ("#checkout (button.button.primary) background-color "
                             "rgb(1, 2, 3) → rgb(4, 5, 6)")
    assert why.causes[0].key == explain(base, head).causes[0].key      # the name is not the key


def nav(links: int, width: float = 1280) -> list[El]:
    els = [El("body", "all", 0, 0, width, 400), El("body > nav", "nav", 0, 0, width, 40)]
    els += [El(f"body > nav > a.nav-link:nth-of-type({i})", f"link {i}", 100 * i, 10, 80, 20,
               style={"color": "rgb(0, 0, 0)"}) for i in range(1, links + 1)]
    els += [El(f"body > main > article.card:nth-of-type({i})", f"card {i}", 20, 60 + 100 * i,
               300, 90, style={"border-top-width": "0px"}) for i in range(1, 4)]
    return els


def recoloured(els: list[El], prop: str, value: str, match: str) -> list[El]:
    return [replace(e, style={**e.style, prop: value}) if match in e.selector else e
            for e in els]


def test_the_same_change_on_many_elements_is_one_rule() -> None:
    why = explain(nav(6), recoloured(nav(6), "color", "rgb(194, 87, 26)", "a.nav-link"))
    assert len(why.causes) == 1
    top = why.causes[0]
    assert (top.kind, top.selector, top.count) == ("restyled", "a.nav-link", 6)
    assert top.text == "a.nav-link (6 elements) color rgb(0, 0, 0) → rgb(194, 87, 26)"
    assert top.members[0] == "body > nav > a.nav-link:nth-of-type(1)" and len(top.members) == 6
    # a narrow viewport shows fewer links: the same rule, the same key
    narrow = explain(nav(4, width=390),
                     recoloured(nav(4, width=390), "color", "rgb(194, 87, 26)", "a.nav-link"))
    assert narrow.key == why.key and narrow.causes[0].count == 4
    # two links are still two elements, each named
    two = explain(nav(2), recoloured(nav(2), "color", "rgb(194, 87, 26)", "a.nav-link"))
    assert [c.selector for c in two.causes] == ["body > nav > a.nav-link:nth-of-type(1)",
                                               "body > nav > a.nav-link:nth-of-type(2)"]
    # a border on every card that made each taller: one rule that grew; what is below moved
    base = nav(3)
    head = [replace(e, height=e.height + 2, style={**e.style, "border-top-width": "2px"})
            if "article.card" in e.selector else e for e in base]
    head = [replace(e, y=e.y + 2 * (int(e.selector[-2]) - 1))
            if "article.card" in e.selector else e for e in head]
    why = explain(base, head)
    assert [c.text for c in why.causes] == [
        "article.card (3 elements) border-top-width 0px → 2px"]
    assert why.causes[0].resized
    footer = El("body > footer", "footer", 0, 500, 1280, 40)
    why = explain(base + [footer], head + [replace(footer, y=506)])
    assert why.summary().endswith("; 1 element(s) below moved down 6 px")
    # an unchanged element with the same selector shape is not swept into the rule
    mixed = recoloured(nav(6), "color", "rgb(194, 87, 26)", "a.nav-link:nth-of-type(")
    mixed = [replace(e, style={"color": "rgb(0, 0, 0)"}) if e.selector.endswith("(6)") else e
             for e in mixed]
    assert explain(nav(6), mixed).causes[0].count == 5


def test_a_change_on_unlike_elements_names_the_first_of_them() -> None:
    base = [El(f"#{name}", name, 10 * i, 0, 8, 8, style={"color": "rgb(0, 0, 0)"}, tag=tag)
            for i, (name, tag) in enumerate([("brand", "a"), ("nav-cart", "a"),
                                             ("cart-count", "span"), ("nav-home", "a")])]
    head = [replace(e, style={"color": "rgb(9, 9, 9)"}) for e in base]
    why = explain(base, head)
    assert why.summary() == ("#brand, #nav-cart, #cart-count +1 more (4 elements: a, span) "
                             "color rgb(0, 0, 0) → rgb(9, 9, 9)")
    plain = [El("body", "b", 0, 0, 100, 100, style={"background-color": "rgb(1, 1, 1)"})]
    plain += [El(f"body > img:nth-of-type({i})", "", 0, 10 * i, 5, 5,
                 style={"background-color": "rgb(1, 1, 1)"}) for i in range(1, 4)]
    washed = [replace(e, style={"background-color": "rgb(2, 2, 2)"}) for e in plain]
    assert explain(plain, washed).summary() == ("4 elements (body, img) background-color "
                                                "rgb(1, 1, 1) → rgb(2, 2, 2)")
