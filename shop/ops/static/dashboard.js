// The dashboard: polls /api/pipeline every second and draws queues, rates, dead letters,
// outboxes and flash-sale counts. Sparklines are drawn by hand on small canvases.
(function () {
  "use strict";
  const HISTORY = 60;
  const history = {};   // queue -> [messages handled per second, ...], the last minute
  let lastHandled = null;
  let lastAt = null;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  function spark(values) {
    const canvas = document.createElement("canvas");
    canvas.className = "spark";
    canvas.width = 130; canvas.height = 30;
    const g = canvas.getContext("2d");
    const max = Math.max(1, ...values);
    g.strokeStyle = "#5b3cc4"; g.lineWidth = 2; g.beginPath();
    values.forEach((v, i) => {
      const x = (i / (HISTORY - 1)) * 128 + 1;
      const y = 28 - (v / max) * 26;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    return canvas;
  }

  function rates(handled) {
    const now = Date.now();
    const perQueue = {};
    Object.values(handled || {}).forEach((queues) => {
      Object.entries(queues || {}).forEach(([queue, n]) => { perQueue[queue] = (perQueue[queue] || 0) + n; });
    });
    const result = {};
    if (lastHandled && lastAt) {
      const seconds = (now - lastAt) / 1000;
      Object.entries(perQueue).forEach(([queue, n]) => {
        result[queue] = Math.max(0, (n - (lastHandled[queue] || 0)) / seconds);
      });
    }
    lastHandled = perQueue; lastAt = now;
    return { perSecond: result, total: perQueue };
  }

  // A queue's name, and a link to the lab that teaches its pattern (/labs#NAME).
  function queueCell(q) {
    const td = document.createElement("td");
    const name = document.createElement("span");
    td.className = "queue-name";
    name.className = "name";
    name.textContent = q.name;
    td.append(name);
    if (q.lab) {
      const link = document.createElement("a");
      link.className = "lab-link";
      link.href = `/labs#${encodeURIComponent(q.lab)}`;
      link.textContent = `lab: ${q.lab}`;
      link.title = `shop lab run ${q.lab}`;
      td.append(" ", link);
    }
    return td;
  }

  function stat(label, value) {
    const li = document.createElement("li");
    li.append(label);
    const strong = document.createElement("strong");
    strong.textContent = value === null || value === undefined ? "–" : String(value);
    li.append(strong);
    return li;
  }

  async function replay(queue, button) {
    const token = document.getElementById("admin-token").value.trim();
    const result = document.getElementById("replay-result");
    button.disabled = true;
    try {
      const response = await fetch(`/api/dead-letters/${encodeURIComponent(queue)}/replay`, {
        method: "POST", headers: { Authorization: `Bearer ${token}` },
      });
      const body = await response.json();
      result.textContent = response.ok ? `Moved ${body.moved} back to ${queue}` : body.detail;
    } finally { button.disabled = false; }
  }

  function render(pipeline) {
    const { perSecond, total } = rates(pipeline.handled);
    const work = pipeline.queues.filter((q) => !q.dead);
    const dead = pipeline.queues.filter((q) => q.dead);
    const rows = work.map((q) => {
      const depth = (q.ready || 0) + (q.unacked || 0);
      (history[q.name] = history[q.name] || new Array(HISTORY).fill(0)).push(perSecond[q.name] || 0);
      history[q.name] = history[q.name].slice(-HISTORY);
      const tr = document.createElement("tr");
      tr.dataset.queue = q.name;
      const chart = document.createElement("td");
      chart.append(spark(history[q.name]));
      const unacked = cell(q.unacked, "num unacked");
      if (q.unacked === null && pipeline.management === false) unacked.title = "needs the management plugin: see the note below";
      tr.append(queueCell(q), cell(q.ready, "num ready"), unacked, cell(q.consumers, "num"),
                cell(total[q.name], "num handled"),
                cell(perSecond[q.name] === undefined ? "–" : perSecond[q.name].toFixed(1), "num"), chart);
      const box = document.querySelector(`svg .queue[data-queue="${CSS.escape(q.name)}"]`);
      if (box) box.classList.toggle("busy", depth > 0);
      return tr;
    });
    document.querySelector("#queues tbody").replaceChildren(...rows);
    document.querySelector("#dead tbody").replaceChildren(...dead.map((q) => {
      const tr = document.createElement("tr");
      const action = document.createElement("td");
      const button = document.createElement("button");
      const workQueue = q.name.replace(/\.dead$/, "");
      button.className = "small"; button.type = "button"; button.textContent = "Replay";
      button.disabled = !q.ready;
      button.addEventListener("click", () => replay(workQueue, button));
      action.append(button);
      tr.dataset.queue = q.name;
      tr.append(queueCell(q), cell(q.ready, "num"), action);
      return tr;
    }));
    document.getElementById("pipeline-notes").replaceChildren(...(pipeline.notes || []).map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    document.getElementById("outboxes").replaceChildren(
      ...Object.entries(pipeline.outbox).map(([service, n]) => stat(`${service}`, n)));
    const flash = pipeline.flash_sale || {};
    document.getElementById("flash").replaceChildren(
      stat("accepted", flash.accepted), stat("shed", flash.dropped),
      stat("won", (flash.decided || {}).won), stat("lost", (flash.decided || {}).lost));
  }

  async function poll() {
    const error = document.getElementById("dashboard-error");
    try {
      const response = await fetch("/api/pipeline");
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || "The pipeline cannot be read");
      error.hidden = true;
      render(body);
    } catch (e) {
      error.hidden = false;
      error.textContent = e.message;
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
