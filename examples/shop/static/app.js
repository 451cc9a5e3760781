/* Diffie Shop client code: the cart (localStorage), the catalogue grid, cart pricing. */
(function () {
  "use strict";

  var CART_KEY = "shop.cart";

  function readCart() {
    try {
      var items = JSON.parse(window.localStorage.getItem(CART_KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (err) {
      return [];
    }
  }

  function writeCart(items) {
    window.localStorage.setItem(CART_KEY, JSON.stringify(items));
    updateCartCount();
  }

  function addToCart(productId, quantity) {
    var items = readCart();
    var found = items.filter(function (item) { return item.product_id === productId; })[0];
    if (found) {
      found.quantity = Math.min(99, found.quantity + quantity);
    } else {
      items.push({ product_id: productId, quantity: quantity });
    }
    writeCart(items);
  }

  function removeFromCart(productId) {
    writeCart(readCart().filter(function (item) { return item.product_id !== productId; }));
  }

  function cartCount() {
    return readCart().reduce(function (sum, item) { return sum + item.quantity; }, 0);
  }

  function updateCartCount() {
    var el = document.getElementById("cart-count");
    if (el) { el.textContent = String(cartCount()); }
  }

  function getJSON(url, options) {
    return fetch(url, options).then(function (response) {
      if (!response.ok) { throw new Error(url + " answered " + response.status); }
      return response.json();
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function showAccount() {
    getJSON("/api/me").then(function (me) {
      var link = document.getElementById("nav-account");
      if (link && me.signed_in) {
        link.textContent = me.user.name.split(" ")[0];
        link.setAttribute("href", "/account");
      }
    }).catch(function () { /* the header keeps its "Sign in" link */ });
  }

  function productCard(product) {
    return el("article", { "class": "product-card", "data-product-id": String(product.id) }, [
      el("a", { href: product.url }, [
        el("img", { src: product.image, alt: "", width: "320", height: "240" }),
        el("div", { "class": "card-body" }, [
          el("h2", {}, [product.name]),
          el("p", { "class": "summary" }, [product.summary]),
          el("p", { "class": "price" }, [product.price])
        ])
      ])
    ]);
  }

  function initHome() {
    var grid = document.getElementById("product-grid");
    getJSON("/api/products").then(function (data) {
      data.products.forEach(function (product) { grid.appendChild(productCard(product)); });
    }).catch(function () {
      document.getElementById("grid-error").hidden = false;
    });
  }

  function initProduct() {
    var button = document.getElementById("add-to-cart");
    var status = document.getElementById("cart-status");
    var productId = Number(button.getAttribute("data-product-id"));
    getJSON("/api/products/" + productId).then(function (product) {
      document.getElementById("stock").textContent = product.availability;
    }).catch(function () { /* keep the server-rendered availability */ });
    button.addEventListener("click", function () {
      addToCart(productId, 1);
      status.textContent = "Added to cart";
    });
  }

  function renderQuote(quote) {
    var table = document.getElementById("cart-lines");
    var body = table.querySelector("tbody");
    body.textContent = "";
    quote.lines.forEach(function (line) {
      var remove = el("button", { "class": "remove", type: "button" }, ["Remove"]);
      remove.addEventListener("click", function () {
        removeFromCart(line.product_id);
        initCart();
      });
      body.appendChild(el("tr", { "data-product-id": String(line.product_id) }, [
        el("td", {}, [line.name]),
        el("td", {}, [String(line.quantity)]),
        el("td", {}, [line.line_total]),
        el("td", {}, [remove])
      ]));
    });
    table.hidden = false;
    document.getElementById("cart-summary").hidden = false;
    document.getElementById("cart-subtotal").textContent = quote.subtotal;
    document.getElementById("cart-shipping").textContent = quote.shipping;
    document.getElementById("cart-total").textContent = "Total: " + quote.total;
    document.getElementById("checkout").disabled = false;
  }

  function initCart() {
    var cart = document.getElementById("cart");
    var items = readCart();
    document.getElementById("cart-error").hidden = true;
    if (items.length === 0) {
      document.getElementById("cart-empty").hidden = false;
      document.getElementById("cart-lines").hidden = true;
      document.getElementById("cart-summary").hidden = true;
      document.getElementById("cart-total").textContent = "";
      document.getElementById("checkout").disabled = true;
      cart.setAttribute("data-state", "empty");
      return;
    }
    getJSON("/api/cart/quote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ items: items })
    }).then(function (quote) {
      renderQuote(quote);
      cart.setAttribute("data-state", "ready");
    }).catch(function () {
      document.getElementById("cart-error").hidden = false;
      cart.setAttribute("data-state", "error");
    });
  }

  var pages = { home: initHome, product: initProduct, cart: initCart };

  document.addEventListener("DOMContentLoaded", function () {
    updateCartCount();
    showAccount();
    var init = pages[document.body.getAttribute("data-page")];
    if (init) { init(); }
  });
}());
