// The flash-sale page: live remaining count and countdown, a Buy button that gets a
// ticket and follows it to WON or LOST, and one automatic retry after a 429 (or a 409
// that says the sale opens within a few seconds).
(function () {
  "use strict";
  const sale = document.getElementById("sale");
  if (!sale) return;
  const id = sale.dataset.saleId;
  const form = document.getElementById("buy-form");
  const ticket = document.getElementById("ticket");
  const button = document.getElementById("buy");
  const say = (text) => { ticket.textContent = text; };

  async function refreshSale() {
    try {
      const body = await (await fetch(`/api/flash-sales/${encodeURIComponent(id)}`)).json();
      document.getElementById("remaining").textContent = body.remaining;
      document.getElementById("quota").textContent = body.quota;
      const note = document.getElementById("sale-note");
      note.textContent = body.note || "";
      note.hidden = !body.note;
      const status = document.getElementById("sale-status");
      status.textContent = body.status;
      status.className = `badge badge-${body.status}`;
      const countdown = document.getElementById("countdown");
      const seconds = Math.ceil((new Date(body.starts_at) - Date.now()) / 1000);
      countdown.hidden = body.status !== "upcoming";
      if (body.status === "upcoming") {
        countdown.textContent = seconds > 0 ? `Starts in ${seconds} s` : "Opening in a moment";
      }
    } catch (error) { /* next time */ }
  }

  async function follow(statusUrl) {
    for (let i = 0; i < 240; i += 1) {
      const body = await (await fetch(statusUrl)).json();
      if (body.status === "WON") {
        ticket.replaceChildren("You won! ");
        const link = document.createElement("a");
        link.href = `/orders/${body.order_id}`;
        link.textContent = "See your order";
        link.id = "order-link";
        ticket.append(link);
        return;
      }
      if (body.status === "LOST") { say(`Not this time: ${body.reason}`); return; }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    say("Still queued; check again later.");
  }

  async function buy(retried) {
    const response = await fetch(`/api/flash-sales/${encodeURIComponent(id)}/purchases`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ customer: { name: form.name.value, phone: form.phone.value } }),
    });
    const body = await response.json();
    const retryAfter = Number(response.headers.get("Retry-After") || "0");
    const opensSoon = response.status === 409 && retryAfter > 0 && retryAfter <= 5;
    if (response.status === 202) {
      say("QUEUED: your ticket is in line…");
      await follow(body.status_url);
    } else if ((response.status === 429 || opensSoon) && !retried) {
      const wait = retryAfter || 1;
      say(`Busy, retrying in ${wait} s`);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      await buy(true);
    } else if (response.status === 422) {
      say((body.errors || []).map((e) => `${e.field.replace("customer.", "")}: ${e.message}`).join("; "));
    } else {
      say(body.detail || "Something went wrong; try again.");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try { await buy(false); } catch (error) { say("The shop cannot be reached; try again."); }
    finally { button.disabled = false; }
  });
  refreshSale();
  setInterval(refreshSale, 1000);
})();
