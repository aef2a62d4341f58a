// Sync now: poll /sync/progress while a sync runs; update the bar and the words; reload when done.
(function () {
  var state = document.getElementById("sync-state");
  var bar = document.getElementById("sync-bar");
  if (!state || state.getAttribute("data-running") !== "1") return;
  function poll() {
    fetch("/sync/progress", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (j) {
      if (j.locked) { window.location.reload(); return; }
      state.textContent = j.text;
      if (j.total_bytes) { bar.max = j.total_bytes; bar.value = j.done_bytes; } else { bar.removeAttribute("value"); }
      if (j.running) { setTimeout(poll, 500); } else { window.location.reload(); }
    }).catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
