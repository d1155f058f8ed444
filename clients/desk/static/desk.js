// Sealbox Desk: confirmations and the sync button's busy state. No inline script (CSP).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.id === "sync-form") {
    document.getElementById("sync-button").disabled = true;
    document.getElementById("sync-busy").hidden = false;
  }
});

// Once the Desk has locked (no request for the idle period, which this page's load reset),
// a page still open must not keep showing plaintext: it leaves for the lock page.
(function () {
  var after = Number(document.body.getAttribute("data-idle-ms"));
  if (!after) return;
  window.setTimeout(function () {
    document.querySelector("main").textContent = "";
    window.location.assign("/unlock");
  }, after);
})();

// Field mode: files dropped on the new-report form join its file input (which stays usable
// from the keyboard); the list under it names what will be sealed.
(function () {
  var zone = document.getElementById("drop-zone");
  var input = document.getElementById("files");
  var list = document.getElementById("file-list");
  if (!zone || !input || !list) return;
  function show() {
    list.textContent = "";
    for (var i = 0; i < input.files.length; i++) {
      var item = document.createElement("li");
      item.textContent = input.files[i].name;
      item.setAttribute("dir", "auto");
      list.appendChild(item);
    }
  }
  input.addEventListener("change", show);
  zone.addEventListener("dragover", function (event) {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", function () {
    zone.classList.remove("over");
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("over");
    var all = new DataTransfer();
    var i;
    for (i = 0; i < input.files.length; i++) all.items.add(input.files[i]);
    var dropped = event.dataTransfer ? event.dataTransfer.files : [];
    for (i = 0; i < dropped.length; i++) all.items.add(dropped[i]);
    input.files = all.files;
    show();
  });
})();
