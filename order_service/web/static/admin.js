// The admin page: every form is one call of the JSON API, the one curl makes in the
// README, sent with `Authorization: Bearer <token>`. The token is typed once and kept in
// sessionStorage (this tab, until it is closed): never in a cookie, never in a URL.
// A 422's errors[].field names the input the message is shown next to; 401 and 403 say
// the token is missing or not valid.
(function () {
  "use strict";
  const root = document.getElementById("admin");
  if (!root) return;
  root.hidden = false;  // without JavaScript nothing here could work, so nothing is shown
  const KEY = "shop-admin-token";
  const tokenForm = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const tokenSet = document.getElementById("token-set");
  const tokenError = document.getElementById("token-error");
  const money = (cents) => (cents / 100).toFixed(2);

  function showToken(problem) {
    const token = sessionStorage.getItem(KEY);
    tokenForm.hidden = Boolean(token);
    tokenSet.hidden = !token;
    tokenError.textContent = problem || "";
    tokenInput.setAttribute("aria-invalid", problem ? "true" : "false");
    if (problem) tokenInput.focus();
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) { showToken("Enter the admin token."); return; }
    sessionStorage.setItem(KEY, token);
    tokenInput.value = "";
    showToken("");
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showToken("");
  });

  // The input's value as the API wants it: numbers as numbers (anything else is sent as
  // typed, and the API says what is wrong with it), local times as ISO instants.
  function value(input) {
    const raw = input.value.trim();
    if (input.dataset.kind === "int") return /^-?\d+$/.test(raw) ? Number(raw) : raw;
    if (input.dataset.kind === "datetime") return new Date(raw).toISOString();
    return raw;
  }

  function request(form) {
    let path = form.dataset.path;
    const body = {};
    form.querySelectorAll("input[name]").forEach((input) => {
      if (input.dataset.in === "path") {
        path = path.replace(`{${input.name}}`, encodeURIComponent(input.value.trim()));
      } else if (input.value.trim() !== "") {
        body[input.name] = value(input);
      }
    });
    return { path, body };
  }

  function showErrors(form, byField, message) {
    form.querySelectorAll(".field-error").forEach((el) => {
      el.textContent = byField[el.dataset.for] || "";
      const input = form.querySelector(`input[name="${el.dataset.for}"]`);
      if (input) input.setAttribute("aria-invalid", byField[el.dataset.for] ? "true" : "false");
    });
    const result = form.querySelector(".form-result");
    result.textContent = message || "";
    result.className = message ? "form-result alert" : "form-result";
  }

  function succeeded(form, answer) {
    const result = form.querySelector(".form-result");
    result.className = "form-result done";
    const messages = {
      "product-form": () => `Added ${answer.sku}: ${answer.name}, ${money(answer.price_cents)}, ${answer.available} in stock.`,
      "stock-form": () => `The inventory will set the stock of ${answer.sku} to ${answer.stock}.`,
      "coupon-form": () => `Created the coupon ${answer.code}.`,
      "sale-form": () => `Created a flash sale of ${answer.quota} × ${answer.sku} (${answer.status}). `,
    };
    result.textContent = messages[form.id]();
    if (form.id === "sale-form") {
      const link = document.createElement("a");
      link.href = `/flash-sales/${encodeURIComponent(answer.id)}`;
      link.textContent = "Open the sale's page";
      result.append(link);
    }
  }

  async function submit(form) {
    const token = sessionStorage.getItem(KEY);
    if (!token) {
      showErrors(form, {}, "Enter the admin token first (above).");
      showToken("Enter the admin token.");
      return;
    }
    const missing = Array.from(form.querySelectorAll('input[data-in="path"]')).filter((i) => !i.value.trim());
    if (missing.length) {
      showErrors(form, Object.fromEntries(missing.map((input) => [input.name, "is required"])), "");
      return;
    }
    const { path, body } = request(form);
    const response = await fetch(path, {
      method: form.dataset.method,
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.ok) {
      showErrors(form, {}, "");
      succeeded(form, answer);
      form.querySelectorAll("input[name]").forEach((input) => { input.value = ""; });
      refreshProducts();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(KEY);
      showToken(response.status === 403
        ? "The token is not valid (403): enter it again."
        : "The shop did not get a token (401): enter it again.");
      showErrors(form, {}, "The token is not valid: nothing was changed.");
      return;
    }
    const byField = {};
    const unplaced = [];
    (answer.errors || []).forEach((error) => {
      if (form.querySelector(`input[name="${error.field}"]`)) {
        byField[error.field] = byField[error.field] || error.message;
      } else {
        unplaced.push(error.field === "body" ? error.message : `${error.field}: ${error.message}`);
      }
    });
    if (response.status === 404 && form.querySelector('input[name="sku"]')) byField.sku = answer.detail;
    const placed = Object.keys(byField).length > 0;
    showErrors(form, byField, unplaced.join("; ") || (placed ? "" : answer.detail));
  }

  document.querySelectorAll("form.admin-form").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try { await submit(form); } catch (error) {
        showErrors(form, {}, "The shop cannot be reached; try again.");
      } finally { button.disabled = false; }
    });
  });

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  async function refreshProducts() {
    try {
      const products = await (await fetch("/api/products")).json();
      document.querySelector("#admin-products tbody").replaceChildren(...products.map((p) => {
        const tr = document.createElement("tr");
        tr.dataset.sku = p.sku;
        tr.append(cell(p.sku, "mono"), cell(p.name), cell(money(p.price_cents), "num"), cell(p.available, "num available"));
        return tr;
      }));
    } catch (error) { /* the next poll will tell */ }
  }

  showToken("");
  refreshProducts();
  setInterval(refreshProducts, 3000);
})();
