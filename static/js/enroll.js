// Enrollment form, progressively enhanced: the text-message choice shows only for a Cell
// phone, and optional guardians and students stay folded until asked for. Without this
// script every block and every choice is shown, and the server checks the same rules.
(function () {
  "use strict";
  var form = document.getElementById("enroll-form");
  if (!form) { return; }

  function hasContent(block) {
    var filled = false;
    block.querySelectorAll("input[type=text], input[type=email], input[type=tel], select").forEach(function (el) {
      if (el.value && el.value.trim() !== "") { filled = true; }
    });
    block.querySelectorAll("input[type=radio]").forEach(function (el) { if (el.checked) { filled = true; } });
    return filled || block.querySelector(".has-error") !== null;
  }

  form.querySelectorAll("[data-phone-row]").forEach(function (row) {
    var kind = row.querySelector("select[data-kind]");
    var choice = row.querySelector("[data-text-choice]");
    if (!kind || !choice) { return; }
    function sync() {
      var cell = kind.value === "cell";
      choice.hidden = !cell;
      choice.querySelectorAll("input[type=radio]").forEach(function (el) { el.required = cell; });
    }
    kind.addEventListener("change", sync);
    sync();
  });

  ["guardian", "student"].forEach(function (name) {
    var blocks = Array.prototype.slice.call(form.querySelectorAll('[data-block="' + name + '"][data-optional]'));
    var button = form.querySelector('[data-add="' + name + '"]');
    if (!button) { return; }
    var hidden = blocks.filter(function (block) { return !hasContent(block); });
    // Keep the order: once an empty block is hidden, every later empty one is hidden too.
    hidden.forEach(function (block) { block.hidden = true; });
    function refresh() { button.hidden = !blocks.some(function (b) { return b.hidden; }); }
    button.addEventListener("click", function () {
      var next = blocks.filter(function (b) { return b.hidden; })[0];
      if (next) {
        next.hidden = false;
        var first = next.querySelector("input, select");
        if (first) { first.focus(); }
      }
      refresh();
    });
    refresh();
  });
}());
