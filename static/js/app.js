// Small behaviours that need script; served from our static files (no inline script: CSP).
"use strict";

// "Select all on this page" in the sessions list: rows added by "Scan more" start unselected.
document.addEventListener("change", (event) => {
  if (event.target.id !== "select-page") return;
  for (const box of document.querySelectorAll('#selection input[name="k"]')) {
    box.checked = event.target.checked;
  }
});
