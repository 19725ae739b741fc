// The order page: polls the order and redraws its status and timeline as services report.
(function () {
  "use strict";
  const root = document.getElementById("order");
  if (!root) return;
  const id = root.dataset.orderId;
  let seen = -1;
  let quietSince = Date.now();

  function render(order) {
    const status = document.getElementById("status");
    status.textContent = order.status;
    status.className = `badge badge-${order.status.toLowerCase()}`;
    const reason = document.getElementById("reject-reason");
    reason.hidden = !order.reject_reason;
    reason.textContent = order.reject_reason || "";
    if (order.timeline.length === seen) return;
    seen = order.timeline.length;
    quietSince = Date.now();
    const list = document.getElementById("timeline");
    list.replaceChildren(...order.timeline.map((entry) => {
      const item = document.createElement("li");
      const event = document.createElement("span");
      event.className = "event";
      event.textContent = entry.event;
      const service = document.createElement("span");
      service.className = "service";
      service.textContent = entry.service;
      const at = document.createElement("time");
      at.textContent = new Date(entry.at).toLocaleTimeString();
      item.append(event, " ", service, at);
      if (entry.detail) {
        const detail = document.createElement("p");
        detail.className = "detail";
        detail.textContent = entry.detail;
        item.append(detail);
      }
      return item;
    }));
  }

  async function poll() {
    try {
      const response = await fetch(`/api/orders/${encodeURIComponent(id)}`);
      if (response.ok) render(await response.json());
    } catch (error) { /* keep trying */ }
    const quiet = Date.now() - quietSince > 30000;  // settled and nothing new: slow down
    setTimeout(poll, quiet ? 5000 : 700);
  }
  poll();
})();
