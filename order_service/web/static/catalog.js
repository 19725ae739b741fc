// The order form: live subtotal and availability, the coupon checked as it is typed,
// and the order placed through the JSON API with errors shown next to their fields.
// (Without JavaScript the form posts to /orders and the server does the same.)
(function () {
  "use strict";
  const form = document.getElementById("order-form");
  if (!form) return;
  const money = (cents) => (cents / 100).toFixed(2);
  const quantities = () => Array.from(form.querySelectorAll(".product")).map((card) => ({
    sku: card.dataset.sku,
    price: Number(card.querySelector(".price").dataset.price),
    input: card.querySelector("input"),
  }));

  function subtotal() {
    return quantities().reduce((sum, p) => sum + (parseInt(p.input.value, 10) || 0) * p.price, 0);
  }

  function showErrors(byField) {
    form.querySelectorAll(".field-error").forEach((el) => {
      const message = byField[el.dataset.for] || "";
      el.textContent = message;
      const input = document.getElementById(el.dataset.for);
      if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
    });
  }

  let quoteTimer = null;
  const quote = document.getElementById("coupon-quote");
  const discountLine = document.getElementById("discount-line");
  function refresh() {
    document.getElementById("subtotal").textContent = money(subtotal());
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(checkCoupon, 300);
  }

  async function checkCoupon() {
    const code = form.coupon_code.value.trim();
    quote.textContent = "";
    quote.classList.remove("bad");
    discountLine.hidden = true;
    if (!code) return;
    const params = new URLSearchParams({ subtotal_cents: String(subtotal()) });
    const phone = form.phone.value.trim();
    if (phone) params.set("phone", phone);
    try {
      const response = await fetch(`/api/coupons/${encodeURIComponent(code)}?${params}`);
      const body = await response.json();
      if (response.ok && body.valid) {
        quote.textContent = `Coupon takes ${money(body.discount_cents)} off`;
        document.getElementById("discount").textContent = money(body.discount_cents);
        discountLine.hidden = false;
      } else {
        quote.classList.add("bad");
        quote.textContent = body.reason || body.detail || "This coupon cannot be checked now";
      }
    } catch (error) {
      quote.classList.add("bad");
      quote.textContent = "This coupon cannot be checked now";
    }
  }

  function fieldName(path, items) {
    if (path.startsWith("items[")) {
      const index = Number(path.slice(6, path.indexOf("]")));
      return items[index] ? `qty-${items[index].sku}` : "items";
    }
    return { "customer.name": "name", "customer.phone": "phone" }[path] || path;
  }

  // One Idempotency-Key per order being placed: a retry (a double click, or after a 503)
  // is the same order, never a second one. A changed form is a new order.
  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
  let idempotencyKey = newKey();
  form.addEventListener("change", () => { idempotencyKey = newKey(); });

  form.addEventListener("input", refresh);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const items = quantities()
      .map((p) => ({ sku: p.sku, quantity: Number(p.input.value) }))
      .filter((item) => item.quantity !== 0);
    const body = {
      customer: { name: form.name.value, phone: form.phone.value },
      items: items,
    };
    if (form.coupon_code.value.trim()) body.coupon_code = form.coupon_code.value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await fetch("/api/orders", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (response.status === 201) {
        window.location.assign(`/orders/${answer.id}`);
        return;
      }
      const byField = {};
      (answer.errors || []).forEach((e) => {
        const name = e.field === "items" ? "items" : fieldName(e.field, items);
        byField[name] = byField[name] || (e.field === "items" ? "choose at least one product" : e.message);
      });
      if (!Object.keys(byField).length) byField.items = answer.detail || "The order could not be placed.";
      showErrors(byField);
    } catch (error) {
      showErrors({ items: "The shop cannot be reached; try again." });
    } finally {
      button.disabled = false;
    }
  });

  async function refreshAvailability() {
    try {
      const products = await (await fetch("/api/products")).json();
      products.forEach((p) => {
        const el = document.querySelector(`.available[data-sku="${CSS.escape(p.sku)}"]`);
        if (el) el.textContent = p.available;
      });
    } catch (error) { /* the next poll will tell */ }
  }
  setInterval(refreshAvailability, 3000);
  refresh();
})();
