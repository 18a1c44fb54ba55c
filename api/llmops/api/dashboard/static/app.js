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
  const issues = Array.from(doc.querySelectorAll(".issues li"), (li) => li.textContent.trim());
  const text = message ? message.textContent.trim() : "HTTP " + xhr.status;
  return issues.length ? text + ": " + issues.join("; ") : text;
}

function showUpload(form, xhr) {
  const result = form.querySelector(".result");
  const list = form.querySelector(".progress");
  if (xhr.status !== 200) {
    result.className = "result error";
    result.textContent = "Refused: " + errorText(xhr);
    return;
  }
  const done = JSON.parse(xhr.responseText);
  result.className = "result ok";
  result.textContent = done.files.length + " file(s) uploaded and recorded: commit " +
    done.commit.slice(0, 12) + " on " + done.branch + (done.direct ? "" : " (a review branch)");
  result.dataset.commit = done.commit;
  for (const file of done.files) {
    const item = document.createElement("li");
    item.textContent = file.name + ": " + file.size + " bytes, sha256 " + file.sha256;
    list.appendChild(item);
  }
}

function sendFiles(form, files) {
  // All chosen files in one multipart body: one commit records them all.
  const body = new FormData();
  for (const file of files) { body.append("files", file, file.name); }
  const bar = form.querySelector("progress");
  bar.hidden = false;
  bar.value = 0;
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.upload);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
    });
    xhr.addEventListener("load", () => { bar.value = 100; showUpload(form, xhr); resolve(); });
    xhr.addEventListener("error", () => {
      const result = form.querySelector(".result");
      result.className = "result error";
      result.textContent = "The connection failed during the upload.";
      resolve();
    });
    xhr.send(body);
  });
}

function uploadForms() {
  document.querySelectorAll("form[data-upload]").forEach((form) => {
    const input = form.querySelector("input[type=file]");
    const drop = form.querySelector("[data-drop]");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      input.files = e.dataTransfer.files;
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelector(".progress").replaceChildren();
      form.querySelector(".result").textContent = "Uploading " + input.files.length + " file(s)...";
      await sendFiles(form, Array.from(input.files));
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
