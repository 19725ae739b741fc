// The front page's flash sales: each card's countdown ticks every second, and every few
// seconds GET /api/flash-sales brings their status and what is left (and any sale created
// since the page loaded: a copy of the blank card in <template>). The server rendered the
// first cards, so the links work without JavaScript too.
(function () {
  "use strict";
  const section = document.getElementById("flash-sales-section");
  const list = document.getElementById("flash-sales");
  const blank = document.getElementById("sale-card-template");
  if (!section || !list || !blank) return;
  const LABELS = { upcoming: "upcoming", open: "on now", sold_out: "sold out" };
  const money = (cents) => (cents / 100).toFixed(2);
  const products = {};  // sku -> {name, price_cents}: from the catalog below, else asked once

  document.querySelectorAll(".product[data-sku]").forEach((card) => {
    products[card.dataset.sku] = {
      name: card.querySelector(".product-name").textContent,
      price_cents: Number(card.querySelector(".price").dataset.price),
    };
  });

  function clock(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function countdown(card, now) {
    const { status, startsAt, endsAt } = card.dataset;
    if (status === "upcoming") {
      const seconds = Math.ceil((Date.parse(startsAt) - now) / 1000);
      return seconds > 0 ? `Starts in ${clock(seconds)}` : "Opening in a moment";
    }
    if (status === "open") {
      if (!endsAt) return "Until sold out";
      const seconds = Math.ceil((Date.parse(endsAt) - now) / 1000);
      return seconds > 0 ? `Ends in ${clock(seconds)}` : "Ending";
    }
    return "";
  }

  function tick() {
    const now = Date.now();
    list.querySelectorAll(".sale-card").forEach((card) => {
      card.querySelector(".sale-countdown").textContent = countdown(card, now);
    });
  }

  async function product(sku) {
    if (!products[sku]) {
      try {
        const answer = await fetch(`/api/products/${encodeURIComponent(sku)}`);
        if (answer.ok) products[sku] = await answer.json();
      } catch (error) { /* the sku stands in for the name */ }
    }
    return products[sku] || { name: sku, price_cents: null };
  }

  async function fill(card, sale) {
    const known = await product(sale.sku);
    Object.assign(card.dataset, {
      saleId: sale.id, sku: sale.sku, status: sale.status,
      startsAt: sale.starts_at || "", endsAt: sale.ends_at || "",
    });
    const badge = card.querySelector(".sale-status");
    badge.textContent = LABELS[sale.status] || sale.status;
    badge.className = `badge badge-${sale.status} sale-status`;
    card.querySelector(".sale-name").textContent = known.name;
    card.querySelector(".sale-now").textContent = money(sale.price_cents);
    card.querySelector(".sale-was").textContent = known.price_cents === null ? "" : money(known.price_cents);
    card.querySelector(".sale-remaining").textContent = sale.remaining;
    card.querySelector(".sale-quota").textContent = sale.quota;
    card.querySelector(".sale-link").href = `/flash-sales/${encodeURIComponent(sale.id)}`;
    return card;
  }

  function cardFor(id) {
    const shown = list.querySelector(`.sale-card[data-sale-id="${CSS.escape(id)}"]`);
    return shown || blank.content.firstElementChild.cloneNode(true);
  }

  async function refresh() {
    try {
      const answer = await fetch("/api/flash-sales");
      if (!answer.ok) return;
      const sales = await answer.json();
      const cards = await Promise.all(sales.map((sale) => fill(cardFor(sale.id), sale)));
      list.replaceChildren(...cards);
      section.hidden = cards.length === 0;
      tick();
    } catch (error) { /* the next poll will tell */ }
  }

  tick();
  setInterval(tick, 1000);
  setInterval(refresh, 3000);
})();
