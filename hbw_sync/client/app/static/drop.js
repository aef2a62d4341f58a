// Documents page: drag a file anywhere onto the page to add it (the "choose a file" field stays, for
// the keyboard). The dropped file is put in the form's own file field and the form is sent as if the
// person had chosen it and pressed Add: one path to the server, CSRF token included. Words come from
// the form's data-* attributes, already in the person's language.
(function () {
  var form = document.getElementById("drop-form");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var say = document.getElementById("drop-state");
  var depth = 0;
  function hasFiles(e) {
    var t = e.dataTransfer && e.dataTransfer.types;
    return !!t && Array.prototype.indexOf.call(t, "Files") >= 0;
  }
  function setDragging(on) {
    document.body.classList.toggle("dragging", on);
    say.textContent = on ? form.getAttribute("data-drop-here") : "";
  }
  document.addEventListener("dragenter", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    setDragging(true);
  });
  document.addEventListener("dragover", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", function (e) {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) setDragging(false);
  });
  document.addEventListener("drop", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();  // never let the browser open the file in place of the app
    depth = 0;
    setDragging(false);
    var files = e.dataTransfer.files;
    if (files.length !== 1) { say.textContent = form.getAttribute("data-one-file"); return; }
    input.files = files;
    say.textContent = form.getAttribute("data-adding").replace("{name}", files[0].name);
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  });
})();
