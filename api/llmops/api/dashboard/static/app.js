// llmops dashboard: confirmations, multi-file upload with progress, live refresh.
// Plain JavaScript served by the app itself (no CDN, works offline).
"use strict";

function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
}

function errorText(xhr) {
  const doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  const message = doc.querySelector(".message");
  return message ? message.textContent.trim() : "HTTP " + xhr.status;
}

function sendFile(form, file, item) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.upload + "?filename=" + encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        item.textContent = file.name + ": " + Math.round(100 * event.loaded / event.total) + "%";
      }
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        const done = JSON.parse(xhr.responseText);
        item.className = "ok";
        item.textContent = file.name + ": uploaded (" + done.size + " bytes), commit " +
          done.commit.slice(0, 12) + " on " + done.branch;
        item.dataset.commit = done.commit;
      } else {
        item.className = "error";
        item.textContent = file.name + ": refused: " + errorText(xhr);
      }
      resolve();
    });
    xhr.addEventListener("error", () => {
      item.className = "error";
      item.textContent = file.name + ": the connection failed";
      resolve();
    });
    xhr.send(file);
  });
}

function uploadForms() {
  document.querySelectorAll("form[data-upload]").forEach((form) => {
    const input = form.querySelector("input[type=file]");
    const drop = form.querySelector("[data-drop]");
    const list = form.querySelector(".progress");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      input.files = e.dataTransfer.files;
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      list.replaceChildren();
      for (const file of Array.from(input.files)) {  // one after another: one commit each
        const item = document.createElement("li");
        item.textContent = file.name + ": 0%";
        list.appendChild(item);
        await sendFile(form, file, item);
      }
      form.dataset.finished = "true";
    });
  });
}

async function refresh(banner) {
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) { return; }
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.querySelector("main");
  if (fresh) { document.querySelector("main").replaceChildren(...fresh.childNodes); }
  confirmForms();
  uploadForms();
  banner.hidden = false;
}

function live() {
  const main = document.querySelector("main[data-live]");
  if (!main || document.querySelector("form[data-upload] input[type=file]")) { return; }
  const banner = document.getElementById("live");
  let seen = null;
  const poll = async () => {
    try {
      const response = await fetch(main.dataset.live, { credentials: "same-origin" });
      if (response.ok) {
        const run = await response.json();
        const key = run.id + ":" + run.result;
        if (seen !== null && key !== seen && run.result !== "running") {
          banner.textContent = "Run #" + run.id + " (" + run.environment + ") finished: " +
            run.result + ". This page was refreshed.";
          await refresh(banner);
        }
        seen = key;
      }
    } catch (err) { /* offline for a moment: try again on the next tick */ }
  };
  poll();
  window.setInterval(poll, 3000);
}

document.addEventListener("DOMContentLoaded", () => { confirmForms(); uploadForms(); live(); });
