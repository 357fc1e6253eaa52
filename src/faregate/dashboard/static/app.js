// faregate dashboard: small progressive enhancements; every page works without this file.
// Rules: no innerHTML (text only: textContent), no inline script (the CSP forbids it), relative URLs only.
"use strict";

// The CSRF token every state change sends back: forms carry it as a hidden field, fetch calls as a header.
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

// POST JSON (or nothing) to a relative URL with the CSRF header; resolves to the parsed JSON answer.
async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "accept": "application/json", "x-csrf-token": csrfToken() },
    body: body === undefined ? "" : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
  return { status: response.status, body: await response.json() };
}

// <time data-ts="unix seconds"> shows the local date and time.
function showTimes(root) {
  for (const el of root.querySelectorAll("time[data-ts]")) {
    const seconds = Number(el.getAttribute("data-ts"));
    if (Number.isFinite(seconds) && seconds > 0) {
      const when = new Date(seconds * 1000);
      el.setAttribute("datetime", when.toISOString());
      el.textContent = when.toLocaleString();
    }
  }
}

// <button data-copy="#id"> copies the text of the element it names.
function wireCopyButtons(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent || source.value || "");
        button.textContent = "Copied";
      } catch (err) {
        button.textContent = "Select and copy";
      }
    });
  }
}

// <form data-confirm="question"> asks before it is sent.
function wireConfirms(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }
}

// Forms that take a while (a probe, a reload, the live doctor) say so while they run.
function wireBusy(root) {
  for (const form of root.querySelectorAll("form.actions, form[data-busy]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button")) {
        button.disabled = true;
        button.textContent = "Working…";
      }
    });
  }
}

window.faregate = { csrfToken, postJSON, getJSON, showTimes };

document.addEventListener("DOMContentLoaded", () => {
  showTimes(document);
  wireCopyButtons(document);
  wireConfirms(document);
  wireBusy(document);
});
