// Small behaviours that need script; served from our static files (no inline script: CSP).
// Everything here is delegated from `document`, so it also works on what htmx swaps in.
"use strict";

// "Select all on this page" in the sessions list: rows added by "Scan more" start unselected.
document.addEventListener("change", (event) => {
  if (event.target.id !== "select-page") return;
  for (const box of document.querySelectorAll('#selection input[name="k"]')) {
    box.checked = event.target.checked;
  }
});

// --- Copy buttons: data-copy="text", or data-copy-from="id of an input" ------------------

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on another host: no Clipboard API there, but the old way still works.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}

function say(status, text) {
  if (!status) return;
  status.textContent = text;
  clearTimeout(status.clearTimer);
  status.clearTimer = setTimeout(() => { status.textContent = ""; }, 2500);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy], [data-copy-from]");
  if (!button) return;
  const source = button.dataset.copyFrom && document.getElementById(button.dataset.copyFrom);
  const text = source ? source.value : button.dataset.copy;
  const status = button.parentElement.querySelector(".copy-status");
  try {
    await copyText(text);
    say(status, "Copied");
  } catch {
    if (source) source.select();
    say(status, "Could not copy: select the text and press Ctrl+C");
  }
});

// --- TTL countdown: data-ttl holds the seconds left when the page (or fragment) was made ----

function clock(seconds) {
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = String(Math.floor((seconds % 3600) / 60)).padStart(2, "0");
  const secs = String(seconds % 60).padStart(2, "0");
  const time = `${hours}:${minutes}:${secs}`;
  return days ? `${days} d ${time}` : time;  // as the `clock` template filter writes it
}

function tick() {
  const now = Date.now();
  for (const element of document.querySelectorAll("[data-ttl]")) {
    if (!element.dataset.deadline) {
      element.dataset.deadline = String(now + Number(element.dataset.ttl) * 1000);
    }
    const left = Math.max(0, Math.ceil((Number(element.dataset.deadline) - now) / 1000));
    element.textContent = left > 0 ? clock(left) : "0:00:00, expired: reload to check";
  }
}
setInterval(tick, 1000);

// --- Dismissing: the × of an alert, or Escape -----------------------------------------------

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-dismiss]");
  if (button) button.closest(".alert").remove();
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  // An open disclosure (raw element, tool call, recent activity) closes first, keeping the focus on it.
  const open = document.activeElement && document.activeElement.closest("details[open]");
  if (open) {
    open.open = false;
    open.querySelector("summary").focus();
    return;
  }
  const alerts = document.getElementById("alerts");
  if (alerts) alerts.replaceChildren();
});

// --- Failures htmx cannot show: the server's own explanations land in #alerts (see base.html);
// anything else (a 500, a damaged link, the app itself unreachable) is explained here.

function showProblem(text) {
  const alerts = document.getElementById("alerts");
  const box = document.createElement("div");
  box.className = "alert alert-error problem";
  box.setAttribute("role", "alert");
  const paragraph = document.createElement("p");
  paragraph.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "dismiss";
  dismiss.dataset.dismiss = "";
  dismiss.setAttribute("aria-label", "Dismiss this message");
  dismiss.textContent = "×";
  box.append(paragraph, dismiss);
  alerts.replaceChildren(box);
}

document.addEventListener("htmx:responseError", (event) => {
  const { xhr, target } = event.detail;
  if (target && target.id === "alerts") return;  // already explained by the server
  const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
  const said = plain && xhr.responseText.length < 300 ? ` ${xhr.responseText}` : "";
  const requestId = xhr.getResponseHeader("X-Request-ID");
  showProblem(
    `That did not work (HTTP ${xhr.status}).${said} Reload the page and try again; ` +
    `if it keeps happening, tell an admin${requestId ? ` the request id ${requestId}` : ""}.`
  );
});

document.addEventListener("htmx:sendError", () => {
  showProblem(
    "Memory Admin could not be reached: the server or your network is down. " +
    "Check your connection and try again in a moment."
  );
});
